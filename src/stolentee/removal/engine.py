"""The self-hosted removal engine: onnxruntime sessions over rembg's model files, plus the
graphic-aware colour-key path, behind one thread-safe ``RemovalEngine``.

Built once per process (API lifespan, worker start-up, CLI command) and shared: one ONNX session
per model, created on first use; at most ``max_in_flight`` images in process at once (the
rest wait), which bounds memory. onnxruntime releases the GIL, so callers use threads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from PIL import Image

from stolentee.config import EngineSettings
from stolentee.removal import compose, graphics, models
from stolentee.removal.base import (
    ImageKind,
    OutputSize,
    RemovalOptions,
    RemovalResult,
)
from stolentee.removal.decode import DecodedImage, decode_image

log = logging.getLogger(__name__)

_TRANSPARENT_BORDER_SHARE = 0.9  # inputs already cut out: most of the border is transparent


class ModelSession:
    """One ONNX model loaded into onnxruntime; ``predict`` is safe to call from many threads."""

    def __init__(
        self,
        *,
        spec: models.ModelSpec,
        path: str,
        threads: int,
        providers: str,
    ) -> None:
        self.spec = spec
        options = ort.SessionOptions()
        # Planning one block for every intermediate tensor ("memory pattern") costs ~200 MB
        # resident with u2netp and measured no faster. (Turning the CPU arena off as well was
        # measured slower and, over a long run, no smaller: malloc fragments instead.)
        options.enable_mem_pattern = False
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
        self.session = ort.InferenceSession(path, sess_options=options, providers=wanted)
        self.providers = self.session.get_providers()
        self.input_name = self.session.get_inputs()[0].name
        size = spec.input_size
        self._mean = np.array(spec.mean, dtype=np.float32).reshape(1, 1, 3)
        self._inv_std = (1.0 / np.array(spec.std, dtype=np.float32)).reshape(1, 1, 3)
        self._size = (size, size)

    def predict(self, rgb: Image.Image) -> Image.Image:
        """The matte at the model's resolution, as an ``L`` image."""
        small = rgb.resize(self._size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        pixels = np.asarray(small, dtype=np.float32)
        peak = max(float(pixels.max()), 1e-6)  # the model family's input convention
        tensor = (pixels * (1.0 / peak) - self._mean) * self._inv_std
        batch = np.ascontiguousarray(tensor.transpose(2, 0, 1)[np.newaxis])
        raw = self.session.run(None, {self.input_name: batch})[0][0, 0]
        if self.spec.activation is models.Activation.SIGMOID:
            matte = 1.0 / (1.0 + np.exp(-raw))
        else:
            low, high = float(raw.min()), float(raw.max())
            matte = (raw - low) / max(high - low, 1e-6)
        return Image.fromarray((np.clip(matte, 0.0, 1.0) * 255).astype(np.uint8), mode="L")


@dataclass(frozen=True, slots=True)
class Matte:
    """A full-resolution matte and how it was made."""

    rgb: Image.Image  # RGB, possibly decontaminated at the edges
    alpha: Image.Image  # L, same size
    kind: ImageKind
    method: str


class RemovalEngine:
    """Local background removal. ``name`` identifies it as a provider."""

    name = "local"

    def __init__(self, *, settings: EngineSettings) -> None:
        self.settings = settings
        self._sessions: dict[str, ModelSession] = {}
        self._sessions_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(settings.max_in_flight)

    # --- model sessions -----------------------------------------------------------------------

    def session(self, model: str | None = None) -> ModelSession:
        """The shared session of ``model`` (default: the configured one), built on first use."""
        name = model or self.settings.model
        session = self._sessions.get(name)
        if session is not None:
            return session
        with self._sessions_lock:
            session = self._sessions.get(name)
            if session is None:
                spec = models.get_spec(name)
                path = models.locate(self.settings.models_dir, name)
                started = time.perf_counter()
                session = ModelSession(
                    spec=spec,
                    path=str(path),
                    threads=self.settings.threads,
                    providers=self.settings.providers,
                )
                log.info(
                    "loaded model %s in %.0f ms (%s)",
                    name,
                    (time.perf_counter() - started) * 1000,
                    ", ".join(session.providers),
                )
                self._sessions[name] = session
        return session

    @contextmanager
    def _slot(self) -> Iterator[None]:
        with self._slots:
            yield

    # --- the pipeline -------------------------------------------------------------------------

    def decode(self, data: bytes, size: OutputSize = OutputSize.FULL) -> DecodedImage:
        draft = 1024 if size is OutputSize.PREVIEW else None
        decoded = decode_image(
            data, max_megapixels=self.settings.max_input_megapixels, draft_max_side=draft
        )
        image = _fit_pixels(decoded.image, size.max_pixels)
        if image is decoded.image:
            return decoded
        return DecodedImage(image, decoded.source_format, decoded.has_alpha)

    def matte_image(
        self, decoded: DecodedImage, kind: ImageKind = ImageKind.AUTO, model: str | None = None
    ) -> Matte:
        """Decide graphic or photo and compute the full-resolution matte."""
        image = decoded.image
        input_alpha = image.getchannel("A") if decoded.has_alpha else None
        rgb = image.convert("RGB") if image.mode != "RGB" else image
        if input_alpha is not None and _already_cut(np.asarray(input_alpha)):
            return Matte(rgb, input_alpha, ImageKind.GRAPHIC, "input-alpha")

        if kind is not ImageKind.PHOTO:
            pixels = np.asarray(rgb)
            analysis = graphics.analyse_border(pixels)
            if analysis.is_plain:

                def model_matte() -> NDArray[np.uint8] | None:
                    """The model's matte (at its own size), asked for only when the artwork
                    encloses large background-coloured regions: holes or part of the design."""
                    try:
                        session = self.session(model)
                    except models.ModelNotInstalledError as error:
                        log.debug("enclosed regions kept, no model to judge them: %s", error)
                        return None
                    return np.asarray(session.predict(rgb), dtype=np.uint8)

                cut = graphics.colour_key(pixels, analysis, hole_vote=model_matte)
                use_key = cut.plausible
                if not use_key:
                    try:
                        self.session(model)
                    except models.ModelNotInstalledError as error:
                        log.debug("colour key implausible, but no model to replace it: %s", error)
                        use_key = True
                if use_key:
                    alpha = Image.fromarray(cut.alpha, mode="L")
                    method = "colour-key"
                    if cut.holes:  # the model changed the matte
                        method = f"model+colour-key:{model or self.settings.model}"
                    return Matte(
                        Image.fromarray(cut.rgb, mode="RGB"),
                        _combine(alpha, input_alpha),
                        ImageKind.GRAPHIC,
                        method,
                    )
                log.debug(
                    "colour key implausible (%.0f%% of its edge without contrast); using the model",
                    100 * cut.flat_edges,
                )
            elif kind is ImageKind.GRAPHIC:
                log.debug("graphic requested but the background is not plain; using the model")

        session = self.session(model)
        small = session.predict(rgb)
        alpha = small.resize(rgb.size, Image.Resampling.BILINEAR)
        decided = kind if kind is not ImageKind.AUTO else ImageKind.PHOTO
        return Matte(rgb, _combine(alpha, input_alpha), decided, f"model:{session.spec.name}")

    def matte(
        self, data: bytes, kind: ImageKind = ImageKind.AUTO, model: str | None = None
    ) -> tuple[NDArray[np.uint8], ImageKind]:
        """Full-resolution alpha matte of encoded ``data`` and the kind the engine decided."""
        with self._slot():
            result = self.matte_image(self.decode(data), kind, model)
            return np.asarray(result.alpha, dtype=np.uint8), result.kind

    def remove(self, data: bytes, options: RemovalOptions | None = None) -> RemovalResult:
        """Encoded image in, encoded cutout out."""
        options = options or RemovalOptions()
        timings: dict[str, float] = {}
        with self._slot():
            started = time.perf_counter()
            decoded = self.decode(data, options.size)
            timings["decode"] = _ms_since(started)

            step = time.perf_counter()
            matte = self.matte_image(decoded, options.kind, options.model)
            timings["matte"] = _ms_since(step)

            step = time.perf_counter()
            background = None
            if options.bg_image is not None:
                background = self.decode(options.bg_image, options.size).image
            composed = compose.compose(
                matte.rgb,
                matte.alpha,
                options,
                png_compress_level=self.settings.png_compress_level,
                background_image=background,
            )
            timings["encode"] = _ms_since(step)
            timings["total"] = _ms_since(started)
        return RemovalResult(
            data=composed.data,
            content_type=composed.content_type,
            width=composed.width,
            height=composed.height,
            kind=matte.kind,
            method=matte.method,
            foreground=composed.foreground,
            input_width=decoded.width,
            input_height=decoded.height,
            timings_ms=timings,
        )

    def close(self) -> None:
        with self._sessions_lock:
            self._sessions.clear()


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _fit_pixels(image: Image.Image, max_pixels: int) -> Image.Image:
    """Downscale (keeping the aspect ratio) so that the image has at most ``max_pixels``."""
    pixels = image.width * image.height
    if pixels <= max_pixels:
        return image
    scale = (max_pixels / pixels) ** 0.5
    size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _already_cut(alpha: NDArray[np.uint8]) -> bool:
    border = np.concatenate([alpha[0], alpha[-1], alpha[:, 0], alpha[:, -1]])
    return bool((border < 16).mean() >= _TRANSPARENT_BORDER_SHARE)


def _combine(alpha: Image.Image, input_alpha: Image.Image | None) -> Image.Image:
    """Pixels transparent in the input stay transparent."""
    if input_alpha is None:
        return alpha
    return Image.fromarray(np.minimum(np.asarray(alpha), np.asarray(input_alpha)), mode="L")
