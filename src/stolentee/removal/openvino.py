"""OpenVINO (the `openvino` extra): models compiled for the CPU, in bfloat16 where the CPU has
it, and kept compiled on disk between processes.

OpenVINO is here for one thing onnxruntime's CPU provider lacks: bfloat16 arithmetic on CPUs
that have it (AVX512-BF16, AMX). IS-Net in bfloat16 runs about twice as fast as in float32,
with a matte that agrees with the float32 one more closely than the int8 build's does, and the
service holds less memory. In float32 OpenVINO was no faster than onnxruntime.

The compile cache: a process that loads IS-Net upcasts its fp16 weights, reads the graph and
compiles it (seconds, and a transient peak of the graph held three ways). The compiled model
is exported once to ``STOLENTEE_ENGINE_COMPILE_CACHE_DIR`` and later processes import it
instead, which skips all three. Figures: benchmarks/removal.md.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import os
import queue
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from stolentee.errors import StolenteeError

log = logging.getLogger(__name__)

OPENVINO_INSTALL = "pip install 'stolentee[openvino]'"
_BLOB_SUFFIX = ".ovblob"
_KEY_LENGTH = 20


class RuntimeMissingError(StolenteeError):
    """The configured inference runtime is not installed."""

    code = "runtime_missing"
    title = "Inference runtime not installed"


def import_openvino(why: str) -> Any:
    """The ``openvino`` module, or :class:`RuntimeMissingError` saying ``why`` it is needed."""
    try:
        import openvino
    except ImportError as error:
        raise RuntimeMissingError(f"{why} needs OpenVINO: {OPENVINO_INSTALL}") from error
    return openvino


def installed() -> bool:
    try:
        import_openvino("")
    except RuntimeMissingError:
        return False
    return True


@functools.cache
def cpu_has_bfloat16() -> bool:
    """Whether OpenVINO is installed and this CPU computes in bfloat16 (AVX512-BF16 or AMX)."""
    if not installed():
        return False
    capabilities = _core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return "BF16" in capabilities


@functools.cache
def _core() -> Any:
    """One OpenVINO core per process (it holds the plugins, loaded once)."""
    return import_openvino("OpenVINO inference").Core()


ModelLoader = Callable[[], str | bytes]  # a path, or a serialised graph


class OpenVinoInference:
    """An OpenVINO model compiled for the CPU, in float32, or in bfloat16 where asked for and
    the CPU has it (OpenVINO falls back to float32 where it does not; ``providers`` names what
    it chose, and whether it came from the compile cache). One infer request per caller at a
    time, reused.

    ``load`` gives the model (called only when the cache has no compiled copy); ``name`` and
    ``fingerprint`` (the file's checksum) identify it in the cache; ``cache_dir`` None: none.
    """

    def __init__(
        self,
        load: ModelLoader,
        *,
        name: str,
        fingerprint: str,
        threads: int,
        bfloat16: bool,
        cache_dir: Path | None,
    ) -> None:
        core = _core()
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "bf16" if bfloat16 else "f32",
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        blob = None
        if cache_dir is not None:
            blob = cache_dir / f"{name}-{_cache_key(fingerprint, config)}{_BLOB_SUFFIX}"
        compiled = _import_blob(core, blob, config) if blob is not None else None
        cached = compiled is not None
        if compiled is None:
            source = load()
            model = core.read_model(io.BytesIO(source) if isinstance(source, bytes) else source)
            del source
            compiled = core.compile_model(model, "CPU", config)
            del model
            if blob is not None:
                _export_blob(compiled, blob, name)
        self._compiled: Any = compiled
        chosen = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.providers = [f"OpenVINO CPU ({chosen}{', cached' if cached else ''})"]
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


def _cache_key(fingerprint: str, config: dict[str, Any]) -> str:
    """What a compiled model depends on: the model file, the compile settings, OpenVINO's
    version and this CPU's capabilities (a copied cache on another CPU compiles afresh)."""
    openvino = import_openvino("OpenVINO inference")
    parts = {
        "model": fingerprint,
        "config": {key: str(value) for key, value in sorted(config.items())},
        "openvino": openvino.get_version(),
        "cpu": _core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"),
        "cpu_name": _core().get_property("CPU", "FULL_DEVICE_NAME"),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:_KEY_LENGTH]


def _import_blob(core: Any, blob: Path, config: dict[str, Any]) -> Any | None:
    """The compiled model kept at ``blob``, or None (absent, or unreadable: then removed, and
    compiled afresh by the caller)."""
    try:
        data = blob.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        log.warning("compile cache %s unreadable (%s); compiling", blob, error)
        return None
    try:
        return core.import_model(data, "CPU", config)
    except RuntimeError as error:
        log.warning("compile cache %s is damaged (%s); compiling afresh", blob, error)
        blob.unlink(missing_ok=True)
        return None


def _export_blob(compiled: Any, blob: Path, name: str) -> None:
    """Write ``compiled`` to ``blob`` atomically (a reader never sees part of it) and remove
    the model's other blobs (older OpenVINO, other settings). A cache that cannot be written
    is only logged: the model runs all the same."""
    stream = io.BytesIO()
    compiled.export_model(stream)
    temporary = None
    try:
        blob.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=blob.parent, prefix=f".{name}-", suffix=".tmp")
        with os.fdopen(handle, "wb") as out:
            out.write(stream.getbuffer())
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, blob)
        temporary = None
    except OSError as error:
        log.warning("could not keep the compiled %s in %s (%s)", name, blob.parent, error)
        return
    finally:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
    own = re.compile(rf"{re.escape(name)}-[0-9a-f]{{{_KEY_LENGTH}}}{re.escape(_BLOB_SUFFIX)}")
    for stale in blob.parent.iterdir():
        if stale != blob and own.fullmatch(stale.name):
            stale.unlink(missing_ok=True)
    log.info("kept the compiled %s at %s", name, blob)
