"""The contenders the benchmarks run: our engine and rembg, each as encoded bytes in, PNG out.

rembg is optional (a dev/benchmark dependency): it is imported only when asked for, and a clear
error names the install command when it is missing. Both contenders load the same model file;
:func:`file_md5` of :attr:`Contender.model_file` shows it.
"""

from __future__ import annotations

import hashlib
import importlib
import io
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from stolentee.bench.names import OURS, REMBG
from stolentee.config import EngineSettings
from stolentee.errors import StolenteeError

CONTENDERS = (OURS, REMBG)
REMBG_INSTALL = ".venv/bin/pip install 'rembg[cpu]'"


class BenchError(StolenteeError):
    """A benchmark cannot run (missing data set, missing peer, mismatched model)."""

    code = "bench_error"
    title = "Benchmark error"


@dataclass(frozen=True, slots=True)
class Cut:
    """One cutout: the encoded PNG and how it was made (``colour-key``, ``model:u2netp``, ...)."""

    png: bytes
    method: str


class Contender(Protocol):
    name: str
    model: str
    model_file: Path

    def cutout(self, data: bytes) -> Cut: ...

    def close(self) -> None: ...


class Ours:
    """stolentee's engine: the whole ``RemovalEngine.remove`` pipeline with default options."""

    name = OURS

    def __init__(self, *, settings: EngineSettings, model: str) -> None:
        from stolentee.removal import models
        from stolentee.removal.base import RemovalOptions
        from stolentee.removal.engine import RemovalEngine

        self.model = model
        self.settings = settings.model_copy(update={"model": model})
        self.model_file = models.locate(self.settings.models_dir, model)
        self.engine = RemovalEngine(settings=self.settings)
        self.engine.session()  # build the onnxruntime session now, not inside a timed call
        self._options = RemovalOptions()

    def cutout(self, data: bytes) -> Cut:
        result = self.engine.remove(data, self._options)
        return Cut(result.data, result.method)

    def close(self) -> None:
        self.engine.close()


def import_rembg() -> ModuleType:
    """The ``rembg`` package, or a :class:`BenchError` naming the install command."""
    try:
        return importlib.import_module("rembg")
    except ImportError as exc:
        raise BenchError(
            f"rembg is not installed; it is the peer this benchmark compares against. "
            f"Install it with: {REMBG_INSTALL}"
        ) from exc


class Rembg:
    """rembg's ``remove(bytes, session=...)``: its whole pipeline, bytes in, PNG bytes out."""

    name = REMBG

    def __init__(self, *, model: str) -> None:
        rembg = import_rembg()
        factory = importlib.import_module("rembg.session_factory")
        session_class: Any = next(
            (cls for cls in factory.sessions_class if cls.name() == model), None
        )
        if session_class is None:
            raise BenchError(f"rembg has no model named {model!r}")
        existing = session_class.resolve_existing(f"{model}.onnx")
        if existing is None:
            # Never let rembg download: name where it looks instead.
            raise BenchError(
                f"rembg finds no {model}.onnx in {session_class.model_dir()} or "
                f"{session_class.legacy_home()}; install it with `stolentee models install "
                f"{model}` (rembg reads ~/.u2net, or U2NET_HOME when set)"
            )
        self.model = model
        self.model_file = Path(existing)
        self._remove: Any = rembg.remove
        self.session: Any = rembg.new_session(model)

    def cutout(self, data: bytes) -> Cut:
        png = self._remove(data, session=self.session)
        if not isinstance(png, bytes):
            raise BenchError(f"rembg.remove returned {type(png).__name__}, expected bytes")
        return Cut(png, f"model:{self.model}")

    def close(self) -> None:
        self.session = None


def make_contender(name: str, *, settings: EngineSettings, model: str) -> Contender:
    if name == OURS:
        return Ours(settings=settings, model=model)
    if name == REMBG:
        return Rembg(model=model)
    raise BenchError(f"unknown contender {name!r}; choose from {', '.join(CONTENDERS)}")


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_same_model(contenders: list[Contender]) -> str:
    """The md5 of the model file every contender loads; raise if they differ."""
    digests = {c.name: file_md5(c.model_file) for c in contenders}
    if len(set(digests.values())) > 1:
        listed = ", ".join(f"{n}: {c.model_file} ({digests[n]})" for n, c in _named(contenders))
        raise BenchError(f"the contenders load different model files: {listed}")
    return next(iter(digests.values()))


def _named(contenders: list[Contender]) -> list[tuple[str, Contender]]:
    return [(c.name, c) for c in contenders]


def alpha_of(png: bytes) -> NDArray[np.uint8]:
    """The alpha channel of an encoded cutout (fully opaque when it has none)."""
    with Image.open(io.BytesIO(png)) as image:
        image.load()
        if "A" in image.getbands():
            return np.asarray(image.getchannel("A"), dtype=np.uint8)
        if image.mode == "P" and "transparency" in image.info:
            return np.asarray(image.convert("RGBA").getchannel("A"), dtype=np.uint8)
        return np.full((image.height, image.width), 255, dtype=np.uint8)
