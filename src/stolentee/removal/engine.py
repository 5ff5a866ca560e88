"""The self-hosted removal engine: model sessions (onnxruntime, or OpenVINO) over rembg's model
files, plus the graphic-aware colour-key path, behind one thread-safe ``RemovalEngine``.

Built once per process (API lifespan, worker start-up, CLI command) and shared: one session per
model, created on first use; at most ``max_in_flight`` images in process at once (the rest
wait), which bounds memory. Both runtimes release the GIL, so callers use threads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from stolentee.config import EngineSettings
from stolentee.removal import inference, memory, models, tensors
from stolentee.removal.base import (
    ImageKind,
    OutputSize,
    RemovalOptions,
    RemovalResult,
    model_in,
)
from stolentee.removal.imaging import border, compose, edges, graphics, texture
from stolentee.removal.imaging.arrays import u8
from stolentee.removal.imaging.cpus import available_cpus
from stolentee.removal.imaging.decode import DecodedImage, decode_image
from stolentee.removal.memory import release_free_memory, tune_malloc
from stolentee.removal.precision import upcast

log = logging.getLogger(__name__)

_TRANSPARENT_BORDER_SHARE = 0.9  # inputs already cut out: most of the border is transparent


class ModelSession:
    """One ONNX model loaded into the configured runtime (:mod:`stolentee.removal.inference`);
    ``predict`` is safe to call from many threads."""

    def __init__(self, *, spec: models.ModelSpec, path: Path, settings: EngineSettings) -> None:
        self.spec = spec
        tune_malloc(spec.heap_reserve_mb << 20)
        self.inference = inference.open_inference(
            lambda: _model_source(spec, path),
            name=spec.name,
            fingerprint=models.expected_md5(path, spec) or "",
            settings=settings,
            bfloat16_safe=spec.bfloat16,
        )
        self.providers = self.inference.providers
        self._normaliser = tensors.Normaliser(spec)
        self._running: threading.Semaphore | None = None
        if spec.parallel_inferences:
            self._running = threading.Semaphore(spec.parallel_inferences)

    def predict(self, rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
        """The matte (uint8, 255 = foreground) of an HxWx3 uint8 image, at the model's size."""
        return self.infer(self.model_input(rgb))

    def infer(self, small: NDArray[np.uint8]) -> NDArray[np.uint8]:
        """:meth:`predict` of an image already at the model's size (:meth:`model_input`)."""
        batch = self._normaliser.batch(small)
        if self._running is None:
            raw = self.inference.run(batch)[0, 0]
        else:
            with self._running:
                raw = self.inference.run(batch)[0, 0]
        return self._normaliser.matte(raw)

    def model_input(self, rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
        """``rgb`` at the model's input size (:func:`tensors.model_input`)."""
        return tensors.model_input(rgb, self.spec.input_size)

    @staticmethod
    def upscale(matte: NDArray[np.uint8], size: tuple[int, int]) -> Image.Image:
        """A model-size matte brought to ``size`` (width, height) as an ``L`` image: bicubic
        (OpenCV, saturated to 0..255), faster than Pillow's bilinear and closer to the truth
        (benchmarks/decisions.md, "resizing for the model and back")."""
        return Image.fromarray(u8(cv2.resize(matte, size, interpolation=cv2.INTER_CUBIC)), mode="L")


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
        if settings.hole_judge_model not in ("", models.Tier.FAST, models.Tier.QUALITY):
            models.get_spec(settings.hole_judge_model)  # unknown: a clear error at start-up
        inference.check_runtime(settings)  # not installed: a clear error at start-up
        self._bfloat16 = inference.bfloat16_available(settings)
        # The free heap kept between images beyond the default: the largest reserve of the
        # models loaded so far.
        self._heap_reserve = 0
        # One photo's edge pass is shared by as many threads as an inference uses.
        self._edge_threads = settings.threads or available_cpus()

    # --- model sessions -----------------------------------------------------------------------

    def session(self, model: str | None = None) -> ModelSession:
        """The shared session of ``model`` (default: the configured one), built on first use;
        a tier (``fast``, ``quality``) names the model that serves it (:func:`models.resolve`)."""
        name = models.resolve(
            self.settings.models_dir, model or self.settings.model, bfloat16=self._bfloat16
        )
        session = self._sessions.get(name)
        if session is not None:
            return session
        with self._sessions_lock:
            session = self._sessions.get(name)
            if session is None:
                spec = models.get_spec(name)
                path = models.locate(self.settings.models_dir, name)
                started = time.perf_counter()
                session = ModelSession(spec=spec, path=path, settings=self.settings)
                log.info(
                    "loaded model %s in %.0f ms (%s)",
                    name,
                    (time.perf_counter() - started) * 1000,
                    ", ".join(session.providers),
                )
                self._sessions[name] = session
                self._heap_reserve = max(self._heap_reserve, spec.heap_reserve_mb << 20)
                # Loading (and upcasting) left the file's bytes and graph free in the heap.
                release_free_memory(keep=0)
        return session

    def _hole_judge(self, model: str | None) -> ModelSession | None:
        """The session that judges enclosed regions of a colour-keyed graphic: the configured
        judge (``STOLENTEE_HOLE_JUDGE_MODEL``) when installed, else the request's model, else
        None (no model installed: the regions are kept)."""
        candidates = [model]
        if self.settings.hole_judge_model:
            candidates.insert(0, self.settings.hole_judge_model)
        for candidate in candidates:
            try:
                return self.session(candidate)
            except models.ModelNotInstalledError as error:
                log.debug("no %s to judge enclosed regions: %s", candidate or "model", error)
        return None

    @contextmanager
    def _slot(self) -> Iterator[None]:
        try:
            with self._slots:
                yield
        finally:
            release_free_memory(max(memory.KEEP_FREE_HEAP_BYTES, self._heap_reserve))

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
        return self._matte([decoded], kind, model)

    def _matte(self, taken: list[DecodedImage], kind: ImageKind, model: str | None) -> Matte:
        """:meth:`matte_image` of the one image in ``taken``, which it takes out of the list.

        When the caller holds no other reference, the image is freed as soon as it is no longer
        needed: the colour key works on a numpy copy, and the Pillow one (4 bytes a pixel) would
        otherwise still be resident while the model runs for a hole vote.
        """
        decoded = taken.pop()
        image, has_alpha = decoded.image, decoded.has_alpha
        del decoded
        input_alpha = image.getchannel("A") if has_alpha else None
        rgb = image.convert("RGB") if image.mode != "RGB" else image
        del image
        if input_alpha is not None and _already_cut(np.asarray(input_alpha)):
            return Matte(rgb, input_alpha, ImageKind.GRAPHIC, "input-alpha")

        if kind is not ImageKind.PHOTO:
            pixels = np.asarray(rgb)
            analysis = border.analyse_border(pixels)
            if not analysis.is_plain:
                del pixels  # not held while the model runs
            else:
                del rgb

                judges: list[str] = []

                def model_matte() -> NDArray[np.uint8] | None:
                    """The judge's matte (at its own size), asked for only when the artwork
                    encloses large background-coloured regions: holes or part of the design."""
                    session = self._hole_judge(model)
                    if session is None:
                        return None
                    judges.append(session.spec.name)
                    return session.predict(pixels)

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
                        method = f"model+colour-key:{judges[0]}"
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
                del cut
                rgb = Image.fromarray(pixels)
                del pixels
            if kind is ImageKind.GRAPHIC and not analysis.is_plain:
                log.debug("graphic requested but the background is not plain; using the model")

        session = self.session(model)
        small = session.model_input(np.asarray(rgb))  # the full-size copy is freed at once
        matte = session.infer(small)
        del small
        alpha = session.upscale(matte, rgb.size)
        if kind is not ImageKind.PHOTO:
            pixels = np.asarray(rgb)  # a view of the image, no copy
            if texture.is_artwork_on_texture(pixels, np.asarray(alpha)):
                alpha = Image.fromarray(texture.refine(pixels, matte), mode="L")
                method = f"model+graph-cut:{session.spec.name}"
                return Matte(rgb, _combine(alpha, input_alpha), ImageKind.GRAPHIC, method)
        decided = kind if kind is not ImageKind.AUTO else ImageKind.PHOTO
        if self.settings.refine_edges:
            pixels = np.asarray(rgb)
            refined, colours = edges.photo_edges(
                pixels, np.asarray(alpha), threads=self._edge_threads
            )
            rgb = Image.fromarray(colours, mode="RGB")
            del pixels
            alpha = Image.fromarray(refined, mode="L")
        return Matte(rgb, _combine(alpha, input_alpha), decided, f"model:{session.spec.name}")

    def matte(
        self, data: bytes, kind: ImageKind = ImageKind.AUTO, model: str | None = None
    ) -> tuple[NDArray[np.uint8], ImageKind]:
        """Full-resolution alpha matte of encoded ``data`` and the kind the engine decided."""
        with self._slot():
            return self._alpha_of(self._matte([self.decode(data)], kind, model))

    @staticmethod
    def _alpha_of(result: Matte) -> tuple[NDArray[np.uint8], ImageKind]:
        """The matte's alpha as an array; the full-size RGB is freed before the slot ends."""
        return np.asarray(result.alpha, dtype=np.uint8), result.kind

    def remove(self, data: bytes, options: RemovalOptions | None = None) -> RemovalResult:
        """Encoded image in, encoded cutout out."""
        options = options or RemovalOptions()
        with self._slot():
            # The full-size buffers live in _remove's frame, so they are freed before the slot
            # hands the heap's spare pages back.
            return self._remove(data, options)

    def _remove(self, data: bytes, options: RemovalOptions) -> RemovalResult:
        timings: dict[str, float] = {}
        started = time.perf_counter()
        taken = [self.decode(data, options.size)]  # _matte frees it when done with it
        input_width, input_height = taken[0].width, taken[0].height
        timings["decode"] = _ms_since(started)

        step = time.perf_counter()
        matte = self._matte(taken, options.kind, options.model)
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
            model=model_in(matte.method),
            foreground=composed.foreground,
            input_width=input_width,
            input_height=input_height,
            timings_ms=timings,
        )

    def close(self) -> None:
        with self._sessions_lock:
            self._sessions.clear()


def _model_source(spec: models.ModelSpec, path: Path) -> str | bytes:
    """What the runtime loads for ``spec``: its file, or for fp16 weights the float32 graph
    upcast in memory once at load (:mod:`stolentee.removal.precision.upcast`)."""
    if not spec.fp16_weights:
        return str(path)
    return upcast.load_float32(path)


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
