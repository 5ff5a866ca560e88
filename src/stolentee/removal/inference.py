"""The runtimes a model session runs on: onnxruntime (the default) or OpenVINO (the `openvino`
extra), each behind :class:`Inference`: a float32 batch in, the model's first output out, safe
to call from many threads.

OpenVINO is here for one thing onnxruntime's CPU provider lacks: bfloat16 arithmetic on CPUs
that have it (AVX512-BF16, AMX). IS-Net in bfloat16 runs much faster than in float32, with a
matte that agrees with the float32 one more closely than the int8 build's does, and the service
holds less memory. In float32 OpenVINO was no faster than onnxruntime, so onnxruntime stays
the default. Figures: benchmarks/removal.md, "photo edges at 2x, and the float IS-Net in
bfloat16".
"""

from __future__ import annotations

import io
import logging
import queue
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from stolentee.errors import StolenteeError

if TYPE_CHECKING:
    from stolentee.config import EngineSettings

log = logging.getLogger(__name__)

OPENVINO_INSTALL = "pip install 'stolentee[openvino]'"


class RuntimeMissingError(StolenteeError):
    """The configured inference runtime is not installed."""

    code = "runtime_missing"
    title = "Inference runtime not installed"


class Inference(Protocol):
    """One loaded model: ``run`` is its first output for a batch."""

    providers: list[str]  # what runs it, for logs and /health

    def run(self, batch: NDArray[np.float32]) -> NDArray[np.float32]: ...


def check_runtime(settings: EngineSettings) -> None:
    """Raise :class:`RuntimeMissingError` now (at start-up) if the configured runtime is not
    installed, rather than at the first model load."""
    if settings.runtime == "openvino":
        _import_openvino()


def _import_openvino() -> Any:
    try:
        import openvino
    except ImportError as error:
        raise RuntimeMissingError(
            f"STOLENTEE_ENGINE_RUNTIME=openvino needs OpenVINO: {OPENVINO_INSTALL}"
        ) from error
    return openvino


def open_inference(
    source: str | bytes, *, settings: EngineSettings, bfloat16_safe: bool
) -> Inference:
    """The model at ``source`` (a path, or a serialised graph) on the configured runtime; in
    bfloat16 where configured and the model is ``bfloat16_safe`` (its spec's ``bfloat16``)."""
    if settings.runtime == "openvino":
        bfloat16 = settings.precision == "bfloat16" and bfloat16_safe
        return OpenVinoInference(source, threads=settings.threads, bfloat16=bfloat16)
    return OnnxRuntimeInference(source, threads=settings.threads, providers=settings.providers)


class OnnxRuntimeInference:
    """An onnxruntime session (CPU, or CUDA first where asked for and available)."""

    def __init__(self, source: str | bytes, *, threads: int, providers: str) -> None:
        options = ort.SessionOptions()
        # Memory: the "memory pattern" (one planned block for every intermediate tensor) and
        # onnxruntime's CPU arena each hold their peak for good, with the full-resolution
        # buffers of decoding, keying and encoding on top. Without them the tensors come from
        # malloc, and with :func:`~stolentee.removal.memory.tune_malloc` glibc keeps them for
        # reuse (no page faults on the next run) by the next inference and by the image work
        # alike: the process holds the larger of the two working sets, not their sum. Figures:
        # benchmarks/decisions.md, "onnxruntime memory".
        options.enable_mem_pattern = False
        options.enable_cpu_mem_arena = False
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        wanted = ["CPUExecutionProvider"]
        if providers == "cuda":
            if "CUDAExecutionProvider" in ort.get_available_providers():
                wanted.insert(0, "CUDAExecutionProvider")
            else:
                log.warning("CUDA asked for but onnxruntime has no CUDA provider; using CPU")
        self.session = ort.InferenceSession(source, sess_options=options, providers=wanted)
        self.providers: list[str] = list(self.session.get_providers())
        self._input = self.session.get_inputs()[0].name
        # The U2-Net family also returns its six side outputs; only the fused first one is used.
        self._outputs = [self.session.get_outputs()[0].name]

    def run(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        output = self.session.run(self._outputs, {self._input: batch})[0]
        return np.asarray(output, np.float32)


class OpenVinoInference:
    """An OpenVINO model compiled for the CPU, in float32, or in bfloat16 where asked for and
    the CPU has it (OpenVINO falls back to float32 where it does not; ``providers`` names what
    it chose). One infer request per caller at a time, reused."""

    def __init__(self, source: str | bytes, *, threads: int, bfloat16: bool) -> None:
        core = _import_openvino().Core()
        model = core.read_model(io.BytesIO(source) if isinstance(source, bytes) else source)
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "bf16" if bfloat16 else "f32",
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self._compiled = core.compile_model(model, "CPU", config)
        chosen = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        self.providers = [f"OpenVINO CPU ({chosen.get_type_name()})"]  # f32 or bf16
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def run(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        try:
            request = self._idle.get_nowait()
        except queue.Empty:
            request = self._compiled.create_infer_request()
        try:
            request.infer({0: batch})
            # The output tensor is the request's own buffer, reused by its next run.
            return np.array(request.get_output_tensor(0).data, np.float32)
        finally:
            self._idle.put(request)
