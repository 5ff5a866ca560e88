"""The contenders the benchmarks run: our engine and rembg, each as encoded bytes in, PNG out.

rembg is optional (a dev/benchmark dependency): it is imported only when asked for, and a clear
error names the install command when it is missing. ``bare`` is the model run the plain way (the
baseline for what the engine adds around it). All contenders load the same model file;
:func:`file_md5` of :attr:`Contender.model_file` shows it.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from stolentee.bench.names import BARE, OURS, REMBG
from stolentee.config import EngineSettings
from stolentee.errors import StolenteeError

if TYPE_CHECKING:
    from stolentee.removal.models import ModelSpec

CONTENDERS = (OURS, REMBG, BARE)
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
    """rembg's ``remove(bytes, session=...)``: its whole pipeline, bytes in, PNG bytes out.

    rembg runs the very file our engine loads. Where rembg knows the file under another name
    (the npm IS-Net is ``isnet-fp16.onnx`` here, ``isnet-general-use.onnx`` to rembg), it is
    linked under rembg's name into a temporary ``U2NET_HOME``, with ``MODEL_CHECKSUM_DISABLED``
    set: rembg's checksum is that of its own release file, not of the same weights in fp16.
    """

    name = REMBG

    def __init__(self, *, settings: EngineSettings, model: str) -> None:
        from stolentee.removal import models

        rembg = import_rembg()
        factory = importlib.import_module("rembg.session_factory")
        spec = models.get_spec(model)
        rembg_model = rembg_name(spec)
        session_class: Any = next(
            (cls for cls in factory.sessions_class if cls.name() == rembg_model), None
        )
        if session_class is None:
            raise BenchError(f"rembg has no model named {rembg_model!r}")
        ours = models.locate(settings.models_dir, model, verify=False)
        self._home: tempfile.TemporaryDirectory[str] | None = None
        self._saved_env: dict[str, str | None] = {}
        if ours.name != f"{rembg_model}.onnx":
            self._home = tempfile.TemporaryDirectory(prefix="stolentee-rembg-home-")
            (Path(self._home.name) / f"{rembg_model}.onnx").symlink_to(ours.resolve())
            for name, value in (("U2NET_HOME", self._home.name), ("MODEL_CHECKSUM_DISABLED", "1")):
                self._saved_env[name] = os.environ.get(name)
                os.environ[name] = value
        existing = session_class.resolve_existing(f"{rembg_model}.onnx")
        if existing is None:
            # Never let rembg download: name where it looks instead.
            raise BenchError(
                f"rembg finds no {rembg_model}.onnx in {session_class.model_dir()} or "
                f"{session_class.legacy_home()}; install it with `stolentee models install "
                f"{model}` (rembg reads ~/.u2net, or U2NET_HOME when set)"
            )
        self.model = model
        self.model_file = Path(existing)
        self._remove: Any = rembg.remove
        self.session: Any = rembg.new_session(rembg_model)

    def cutout(self, data: bytes) -> Cut:
        png = self._remove(data, session=self.session)
        if not isinstance(png, bytes):
            raise BenchError(f"rembg.remove returned {type(png).__name__}, expected bytes")
        return Cut(png, f"model:{self.model}")

    def close(self) -> None:
        self.session = None
        for name, value in self._saved_env.items():  # rembg's environment as it was
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env = {}
        if self._home is not None:
            self._home.cleanup()
            self._home = None


class Bare:
    """The model run the plain way, as a baseline for what the engine adds around it: resize to
    the model's input size (bilinear), the family's normalisation, min-max (or sigmoid) of the
    output, bilinear upscale to the image, that matte as the alpha of the unchanged pixels."""

    name = BARE

    def __init__(self, *, settings: EngineSettings, model: str) -> None:
        import onnxruntime as ort

        from stolentee.removal import models

        self.model = model
        self.spec = models.get_spec(model)
        self.model_file = models.locate(settings.models_dir, model)
        options = ort.SessionOptions()
        options.intra_op_num_threads = settings.threads
        options.log_severity_level = 3
        self._session = ort.InferenceSession(
            str(self.model_file), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name

    def cutout(self, data: bytes) -> Cut:
        from PIL import ImageOps

        from stolentee.removal.models import Activation

        with Image.open(io.BytesIO(data)) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
        size = self.spec.input_size
        small = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), np.float32)
        mean = np.array(self.spec.mean, np.float32)
        std = np.array(self.spec.std, np.float32)
        tensor = ((small / 255.0 - mean) / std).transpose(2, 0, 1)[np.newaxis]
        raw = self._session.run([self._output], {self._input: tensor})[0][0, 0]
        if self.spec.activation is Activation.SIGMOID:
            matte = 1.0 / (1.0 + np.exp(-raw))
        else:
            matte = (raw - raw.min()) / max(float(raw.max() - raw.min()), 1e-6)
        alpha = Image.fromarray((np.clip(matte, 0, 1) * 255).astype(np.uint8), mode="L")
        image.putalpha(alpha.resize(image.size, Image.Resampling.BILINEAR))
        out = io.BytesIO()
        image.save(out, format="PNG", compress_level=1)
        return Cut(out.getvalue(), f"model:{self.model}")

    def close(self) -> None:
        del self._session


def rembg_name(spec: ModelSpec) -> str:
    """rembg's name for the model of ``spec`` (its session class, and its file's stem)."""
    from stolentee.removal.models import Family

    return "isnet-general-use" if spec.family is Family.ISNET else spec.name


def make_contender(name: str, *, settings: EngineSettings, model: str) -> Contender:
    """``name`` running ``model``; the peers of a model built here (the int8 IS-Net) run the
    float file it was built from: the same weights, as they are shipped."""
    if name == OURS:
        return Ours(settings=settings, model=model)
    from stolentee.removal import models

    float_model = models.get_spec(models.resolve(settings.models_dir, model)).derived_from
    if name == REMBG:
        return Rembg(settings=settings, model=float_model or model)
    if name == BARE:
        return Bare(settings=settings, model=float_model or model)
    raise BenchError(f"unknown contender {name!r}; choose from {', '.join(CONTENDERS)}")


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_md5(model_file: Path) -> str:
    """The md5 of the weights a model file holds: its own, or for a model built here the md5
    of the float file it was built from (its build record)."""
    from stolentee.removal.model_record import read_record

    record = read_record(model_file)
    return record.source_md5 if record is not None else file_md5(model_file)


def check_same_model(contenders: list[Contender]) -> str:
    """The md5 of the weights every contender loads (:func:`weights_md5`); raise if they
    differ."""
    digests = {c.name: weights_md5(c.model_file) for c in contenders}
    if len(set(digests.values())) > 1:
        listed = ", ".join(f"{n}: {c.model_file} ({digests[n]})" for n, c in _named(contenders))
        raise BenchError(f"the contenders load different model files: {listed}")
    return next(iter(digests.values()))


def _named(contenders: list[Contender]) -> list[tuple[str, Contender]]:
    return [(c.name, c) for c in contenders]


def alpha_of_image(image: Image.Image) -> NDArray[np.uint8]:
    """The alpha channel of a decoded cutout (fully opaque when it has none)."""
    if "A" in image.getbands():
        return np.asarray(image.getchannel("A"), dtype=np.uint8)
    if image.mode == "P" and "transparency" in image.info:
        return np.asarray(image.convert("RGBA").getchannel("A"), dtype=np.uint8)
    return np.full((image.height, image.width), 255, dtype=np.uint8)


def rgba_of(png: bytes) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """The colours (HxWx3) and the alpha channel of an encoded cutout."""
    with Image.open(io.BytesIO(png)) as image:
        image.load()
        alpha = alpha_of_image(image)
        return np.asarray(image.convert("RGB"), dtype=np.uint8), alpha
