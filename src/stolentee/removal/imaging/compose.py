"""From an image and its alpha matte to the encoded result.

Order of operations (as Remove.bg documents its options): region of interest → crop to the
subject (+ margin) → scale and position the subject on the canvas → background (colour or
image) → channels → format.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from stolentee.removal.base import (
    CENTER,
    Foreground,
    OutputFormat,
    RemovalOptions,
    Roi,
)
from stolentee.removal.imaging.png import encode_cutout_png, encode_png

FOREGROUND_THRESHOLD = 8  # alpha above this counts as subject for boxes and cropping
WEBP_QUALITY = 90
JPEG_QUALITY = 90
CONTENT_TYPES = {
    OutputFormat.PNG: "image/png",
    OutputFormat.WEBP: "image/webp",
    OutputFormat.JPG: "image/jpeg",
    OutputFormat.ZIP: "application/zip",
}
WHITE = (255, 255, 255, 255)


@dataclass(frozen=True, slots=True)
class Composed:
    data: bytes
    content_type: str
    width: int
    height: int
    foreground: Foreground | None


def foreground_box(alpha: NDArray[np.uint8]) -> Foreground | None:
    """Bounding box of alpha > threshold, or ``None`` when nothing is opaque enough."""
    mask = alpha > FOREGROUND_THRESHOLD
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    top, bottom = int(rows[0]), int(rows[-1])
    left, right = int(cols[0]), int(cols[-1])
    return Foreground(top=top, left=left, width=right - left + 1, height=bottom - top + 1)


def apply_roi(alpha: Image.Image, roi: Roi | None) -> Image.Image:
    """Clear the matte outside the region of interest."""
    if roi is None:
        return alpha
    box = roi.box(alpha.width, alpha.height)
    kept = Image.new("L", alpha.size, 0)
    kept.paste(alpha.crop(box), box[:2])
    return kept


def crop_bounds(
    box: Foreground, width: int, height: int, options: RemovalOptions
) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the subject plus margin, clamped to the image."""
    margin_x = options.crop_margin_px + round(box.width * options.crop_margin_percent / 100)
    margin_y = options.crop_margin_px + round(box.height * options.crop_margin_percent / 100)
    return (
        max(0, box.left - margin_x),
        max(0, box.top - margin_y),
        min(width, box.left + box.width + margin_x),
        min(height, box.top + box.height + margin_y),
    )


def _place_subject(
    rgb: Image.Image, alpha: Image.Image, box: Foreground, options: RemovalOptions
) -> tuple[Image.Image, Image.Image, Foreground]:
    """Scale the subject relative to the canvas and move it to ``options.position``."""
    width, height = rgb.size
    bounds = (box.left, box.top, box.left + box.width, box.top + box.height)
    subject_rgb, subject_alpha = rgb.crop(bounds), alpha.crop(bounds)
    if options.scale is not None:
        factor = options.scale * min(width / box.width, height / box.height)
        size = (max(1, round(box.width * factor)), max(1, round(box.height * factor)))
        subject_rgb = subject_rgb.resize(size, Image.Resampling.LANCZOS)
        subject_alpha = subject_alpha.resize(size, Image.Resampling.LANCZOS)
    position = options.position or CENTER
    left = round(position.x * (width - subject_rgb.width))
    top = round(position.y * (height - subject_rgb.height))
    canvas_rgb = Image.new("RGB", (width, height), (0, 0, 0))
    canvas_alpha = Image.new("L", (width, height), 0)
    canvas_rgb.paste(subject_rgb, (left, top))
    canvas_alpha.paste(subject_alpha, (left, top))
    placed = Foreground(
        top=max(top, 0),
        left=max(left, 0),
        width=min(subject_rgb.width, width - max(left, 0)),
        height=min(subject_rgb.height, height - max(top, 0)),
    )
    return canvas_rgb, canvas_alpha, placed


def _cover(background: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize and centre-crop ``background`` so that it covers ``size`` exactly."""
    factor = max(size[0] / background.width, size[1] / background.height)
    scaled = background.convert("RGB").resize(
        (
            max(size[0], round(background.width * factor)),
            max(size[1], round(background.height * factor)),
        ),
        Image.Resampling.LANCZOS,
    )
    left = (scaled.width - size[0]) // 2
    top = (scaled.height - size[1]) // 2
    return scaled.crop((left, top, left + size[0], top + size[1]))


def compose(
    rgb: Image.Image,
    alpha: Image.Image,
    options: RemovalOptions,
    *,
    png_compress_level: int,
    background_image: Image.Image | None = None,
) -> Composed:
    """Apply ``options`` to an RGB image and its ``L`` matte, and encode."""
    alpha = apply_roi(alpha, options.roi)
    box = foreground_box(np.asarray(alpha))
    if options.crop and box is not None:
        bounds = crop_bounds(box, rgb.width, rgb.height, options)
        rgb, alpha = rgb.crop(bounds), alpha.crop(bounds)
        box = Foreground(
            top=box.top - bounds[1], left=box.left - bounds[0], width=box.width, height=box.height
        )
    if box is not None and (options.scale is not None or options.position is not None):
        rgb, alpha, box = _place_subject(rgb, alpha, box, options)

    fmt = options.format
    if options.alpha_only:
        fmt = OutputFormat.PNG if fmt in (OutputFormat.AUTO, OutputFormat.ZIP) else fmt
        data = _encode(alpha, fmt, png_compress_level)
        return Composed(data, CONTENT_TYPES[fmt], alpha.width, alpha.height, box)

    if fmt is OutputFormat.ZIP:
        color = _flatten(rgb, alpha, options, background_image, keep_colour=True)
        data = _zip(color, alpha, png_compress_level)
        return Composed(data, CONTENT_TYPES[fmt], rgb.width, rgb.height, box)

    cutout = background_image is None and options.bg_color is None
    if cutout and fmt in (OutputFormat.AUTO, OutputFormat.PNG) and _is_translucent(alpha):
        # The common case, a transparent PNG cutout: made and encoded band by band.
        data = encode_cutout_png(rgb, alpha, png_compress_level)
        return Composed(data, CONTENT_TYPES[OutputFormat.PNG], rgb.width, rgb.height, box)
    result = _flatten(rgb, alpha, options, background_image, keep_colour=False)
    if fmt is OutputFormat.AUTO:
        fmt = OutputFormat.PNG if _has_transparency(result) else OutputFormat.JPG
    if fmt is OutputFormat.JPG and result.mode == "RGBA":
        result = _on_colour(result, result.getchannel("A"), WHITE)
    data = _encode(result, fmt, png_compress_level)
    return Composed(data, CONTENT_TYPES[fmt], result.width, result.height, box)


def _flatten(
    rgb: Image.Image,
    alpha: Image.Image,
    options: RemovalOptions,
    background_image: Image.Image | None,
    *,
    keep_colour: bool,
) -> Image.Image:
    """The visible result: on the background image or colour, else a transparent cutout.

    ``keep_colour`` (zip's color.jpg) keeps the subject's colours everywhere instead of cutting.
    """
    if background_image is not None:
        canvas = _cover(background_image, rgb.size)
        canvas.paste(rgb, (0, 0), alpha)
        return canvas
    if options.bg_color is not None:
        return _on_colour(rgb, alpha, options.bg_color)
    if keep_colour:
        return rgb.convert("RGB")
    return _transparent_cutout(rgb, alpha)


def _on_colour(
    rgb: Image.Image, alpha: Image.Image, colour: tuple[int, int, int, int]
) -> Image.Image:
    canvas = Image.new("RGBA", rgb.size, colour)
    canvas.paste(rgb.convert("RGB"), (0, 0), alpha)
    return canvas.convert("RGB") if colour[3] == 255 else canvas


def _transparent_cutout(rgb: Image.Image, alpha: Image.Image) -> Image.Image:
    """RGBA cutout whose fully transparent pixels are zeroed.

    Invisible colour left under alpha 0 only costs bytes: zeroing it makes a photo cutout's PNG
    markedly smaller and no slower to encode (benchmarks/decisions.md, "PNG cutouts").
    """
    visible = alpha.point(lambda value: 255 if value else 0)
    cutout = Image.new("RGBA", rgb.size, (0, 0, 0, 0))
    cutout.paste(rgb, (0, 0), visible)
    cutout.putalpha(alpha)
    return cutout


def _has_transparency(image: Image.Image) -> bool:
    return "A" in image.getbands() and _is_translucent(image.getchannel("A"))


def _is_translucent(alpha: Image.Image) -> bool:
    """Whether the ``L`` matte ``alpha`` is anywhere below fully opaque."""
    low = alpha.getextrema()[0]
    return bool(low != 255)


def _zip(color: Image.Image, alpha: Image.Image, png_compress_level: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("color.jpg", _encode(color, OutputFormat.JPG, png_compress_level))
        archive.writestr("alpha.png", _encode(alpha, OutputFormat.PNG, png_compress_level))
    return buffer.getvalue()


def _encode(image: Image.Image, fmt: OutputFormat, png_compress_level: int) -> bytes:
    if fmt is OutputFormat.PNG:
        return encode_png(image, png_compress_level)
    buffer = io.BytesIO()
    if fmt is OutputFormat.WEBP:
        image.save(buffer, format="WEBP", quality=WEBP_QUALITY, method=4)
    elif fmt is OutputFormat.JPG:
        if image.mode not in ("RGB", "L"):
            image = _on_colour(image, image.getchannel("A"), WHITE).convert("RGB")
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    else:
        raise ValueError(f"{fmt} is not an image encoding")
    return buffer.getvalue()
