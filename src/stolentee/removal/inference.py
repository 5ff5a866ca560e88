"""The runtimes a model session runs on, each behind :class:`Inference`: a float32 batch in,
the model's first output out, safe to call from many threads. onnxruntime runs every model;
OpenVINO (:mod:`stolentee.removal.openvino`, the `openvino` extra) runs the models whose spec
allows bfloat16 on CPUs that compute in it.

``STOLENTEE_ENGINE_RUNTIME=auto`` (the default) chooses per model: OpenVINO in bfloat16 where
the spec allows it (IS-Net), OpenVINO is installed and the CPU has bfloat16 instructions;
onnxruntime for the rest (u2netp, BiRefNet, a CPU without bfloat16, CUDA).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from stolentee.removal import openvino
from stolentee.removal.openvino import RuntimeMissingError

if TYPE_CHECKING:
    from stolentee.config import EngineSettings

log = logging.getLogger(__name__)

__all__ = [
    "Inference",
    "RuntimeMissingError",
    "bfloat16_available",
    "open_inference",
    "why_not_bfloat16",
]


class Inference(Protocol):
    """One loaded model: ``run`` is its first output for a batch."""

    providers: list[str]  # what runs it, for logs and /health

    def run(self, batch: NDArray[np.float32]) -> NDArray[np.float32]: ...


def check_runtime(settings: EngineSettings) -> None:
    """Raise :class:`RuntimeMissingError` now (at start-up) if the runtime the settings name
    explicitly is not installed, rather than at the first model load."""
    if settings.runtime == "openvino":
        openvino.import_openvino("STOLENTEE_ENGINE_RUNTIME=openvino")
    elif settings.precision == "bfloat16":
        openvino.import_openvino("STOLENTEE_ENGINE_PRECISION=bfloat16")


def bfloat16_available(settings: EngineSettings) -> bool:
    """Whether the models whose spec allows it are computed in bfloat16 here."""
    return why_not_bfloat16(settings) is None


def why_not_bfloat16(settings: EngineSettings) -> str | None:
    """Why the models whose spec allows it are not computed in bfloat16 here (None: they are)."""
    if settings.runtime == "onnxruntime":
        return "STOLENTEE_ENGINE_RUNTIME=onnxruntime"
    if settings.precision == "float32":
        return "STOLENTEE_ENGINE_PRECISION=float32"
    if settings.runtime == "auto" and settings.providers != "cpu":
        return "STOLENTEE_ENGINE_PROVIDERS=cuda: onnxruntime runs every model"
    if not openvino.installed():
        return f"OpenVINO is not installed: {openvino.OPENVINO_INSTALL}"
    if not openvino.cpu_has_bfloat16():
        return "this CPU has no bfloat16 instructions"
    return None


def open_inference(
    load: Callable[[], str | bytes],
    *,
    name: str,
    fingerprint: str,
    settings: EngineSettings,
    bfloat16_safe: bool,
) -> Inference:
    """The model ``name`` on the runtime the settings choose for it: ``load`` gives its path or
    serialised graph (OpenVINO calls it only when its compile cache has no copy), ``fingerprint``
    identifies the file (its checksum), ``bfloat16_safe`` is its spec's ``bfloat16``."""
    bfloat16 = bfloat16_safe and bfloat16_available(settings)
    if settings.runtime == "openvino" or bfloat16:
        return openvino.OpenVinoInference(
            load,
            name=name,
            fingerprint=fingerprint,
            threads=settings.threads,
            bfloat16=bfloat16,
            cache_dir=compile_cache_dir(settings),
        )
    return OnnxRuntimeInference(load(), threads=settings.threads, providers=settings.providers)


def compile_cache_dir(settings: EngineSettings) -> Path | None:
    """Where OpenVINO keeps compiled models (None: nowhere)."""
    if not settings.compile_cache:
        return None
    return settings.compile_cache_dir or settings.models_dir / "openvino-cache"


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
