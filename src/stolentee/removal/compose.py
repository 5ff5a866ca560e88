"""From an image and its alpha matte to the encoded result: crop, background, channels, format."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from stolentee.removal.base import Foreground, OutputFormat, RemovalOptions

FOREGROUND_THRESHOLD = 8  # alpha above this counts as subject for boxes and cropping
WEBP_QUALITY = 90
JPEG_QUALITY = 90
CONTENT_TYPES = {
    OutputFormat.PNG: "image/png",
    OutputFormat.WEBP: "image/webp",
    OutputFormat.JPG: "image/jpeg",
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


def compose(
    rgb: Image.Image,
    alpha: Image.Image,
    options: RemovalOptions,
    *,
    png_compress_level: int,
) -> Composed:
    """Apply ``options`` to an RGB image and its ``L`` matte, and encode."""
    alpha_array = np.asarray(alpha)
    box = foreground_box(alpha_array)
    if options.crop and box is not None:
        bounds = crop_bounds(box, rgb.width, rgb.height, options)
        rgb, alpha = rgb.crop(bounds), alpha.crop(bounds)
        box = Foreground(
            top=box.top - bounds[1], left=box.left - bounds[0], width=box.width, height=box.height
        )

    if options.alpha_only:
        data = _encode(alpha, options.format, png_compress_level)
        return Composed(data, CONTENT_TYPES[options.format], alpha.width, alpha.height, box)

    background = options.bg_color
    if background is None and options.format is OutputFormat.JPG:
        background = WHITE
    if background is not None:
        canvas = Image.new("RGBA", rgb.size, background)
        canvas.paste(rgb, (0, 0), alpha)
        result = canvas.convert("RGB") if background[3] == 255 else canvas
    else:
        result = _transparent_cutout(rgb, alpha)
    data = _encode(result, options.format, png_compress_level)
    return Composed(data, CONTENT_TYPES[options.format], result.width, result.height, box)


def _transparent_cutout(rgb: Image.Image, alpha: Image.Image) -> Image.Image:
    """RGBA cutout whose fully transparent pixels are zeroed.

    Invisible colour left under alpha 0 only costs bytes: zeroing it makes a 4 MP photo cutout's
    PNG about 30% smaller and no slower to encode (measured in the README).
    """
    visible = alpha.point(lambda value: 255 if value else 0)
    cutout = Image.new("RGBA", rgb.size, (0, 0, 0, 0))
    cutout.paste(rgb, (0, 0), visible)
    cutout.putalpha(alpha)
    return cutout


def _encode(image: Image.Image, fmt: OutputFormat, png_compress_level: int) -> bytes:
    buffer = io.BytesIO()
    if fmt is OutputFormat.PNG:
        image.save(buffer, format="PNG", compress_level=png_compress_level)
    elif fmt is OutputFormat.WEBP:
        image.save(buffer, format="WEBP", quality=WEBP_QUALITY, method=4)
    else:
        if image.mode not in ("RGB", "L"):
            flattened = Image.new("RGB", image.size, WHITE[:3])
            flattened.paste(image, (0, 0), image.getchannel("A") if "A" in image.mode else None)
            image = flattened
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=False)
    return buffer.getvalue()
