"""From an image and its alpha matte to the encoded result.

Order of operations (as Remove.bg documents its options): region of interest → crop to the
subject (+ margin) → scale and position the subject on the canvas → background (colour or
image) → channels → format.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, cast

import cv2
import numpy as np
from isal import isal_zlib
from numpy.typing import NDArray
from PIL import Image

from stolentee.removal.base import (
    CENTER,
    Foreground,
    OutputFormat,
    RemovalOptions,
    Roi,
)

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
# Raw bytes per independently deflated band of rows. 1 MiB: a 1 MP RGBA cutout is 4 bands, so
# it too is deflated on every core, for the same CPU and files no larger than with bigger bands
# (benchmarks/decisions.md, "PNG cutouts").
PNG_BAND_BYTES = 1 << 20
_PNG_COLOUR_TYPES = {"L": 0, "RGB": 2, "RGBA": 6}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ZLIB_HEADER = b"\x78\x01"  # deflate, 32 KiB window, "fastest" (informative only)
_ADLER_BASE = 65521


class _Deflate(Protocol):
    """What the banded encoder needs of a compressor object (zlib's and ISA-L's alike)."""

    def compress(self, data: bytes | memoryview, /) -> bytes: ...

    def flush(self, mode: int = ..., /) -> bytes: ...


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


def encode_png(image: Image.Image, compress_level: int) -> bytes:
    """PNG of ``image``; L, RGB and RGBA images are deflated in bands on several threads.

    Each band of rows is filtered with PNG's "Up" filter (numpy) and deflated on its own
    (ISA-L and zlib release the GIL), ending in a full flush so that the bands concatenate into
    one valid zlib stream; the stream's Adler-32 is combined from the bands'. The pixels decode
    exactly as from Pillow's encoder; the bands do not depend on the number of threads, so the
    bytes are the same on every machine. Pillow's encoder (adaptive filtering, zlib, one
    thread) takes over for other modes; it is several times slower on the cutouts we make, for
    files barely smaller (benchmarks/decisions.md, "PNG cutouts").
    """
    colour_type = _PNG_COLOUR_TYPES.get(image.mode)
    width = image.width
    channels = len(image.getbands())
    if colour_type is None:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=compress_level)
        return buffer.getvalue()
    image.load()

    def rows(top: int, bottom: int) -> NDArray[np.uint8]:
        return np.asarray(image.crop((0, top, width, bottom)))

    return _banded_png(image.size, colour_type, channels, rows, compress_level)


def encode_cutout_png(rgb: Image.Image, alpha: Image.Image, compress_level: int) -> bytes:
    """PNG of the transparent cutout of ``rgb`` by the ``L`` matte ``alpha``: the same pixels
    as :func:`encode_png` of :func:`_transparent_cutout`, but each band's RGBA rows are built
    on the encoding thread that deflates them, so no full-size RGBA image is made (that image
    alone was a large share of the encoding time of a big cutout: benchmarks/decisions.md,
    "PNG cutouts")."""
    width = rgb.width
    rgb = rgb if rgb.mode == "RGB" else rgb.convert("RGB")
    rgb.load()
    alpha.load()

    def rows(top: int, bottom: int) -> NDArray[np.uint8]:
        box = (0, top, width, bottom)
        colour = np.asarray(rgb.crop(box))
        opacity = np.asarray(alpha.crop(box))
        # Invisible colour only costs bytes: zero it (the mask leaves those pixels at 0). OpenCV
        # does this and the channel merge far faster than numpy's strided assignments.
        visible = cv2.bitwise_and(colour, colour, mask=opacity)
        return cast(NDArray[np.uint8], cv2.merge([visible, opacity]))

    return _banded_png(rgb.size, _PNG_COLOUR_TYPES["RGBA"], 4, rows, compress_level)


def _banded_png(
    size: tuple[int, int],
    colour_type: int,
    channels: int,
    rows: Callable[[int, int], NDArray[np.uint8]],
    compress_level: int,
) -> bytes:
    """The PNG file of an image whose rows ``top..bottom`` (as an array) ``rows`` gives; see
    :func:`encode_png`. (zlib's run-length strategy helped photos but made graphics larger, so
    it is not used: benchmarks/decisions.md, "PNG cutouts".)"""
    width, height = size
    row_bytes = width * channels
    band_rows = max(1, PNG_BAND_BYTES // row_bytes)
    tops = list(range(0, height, band_rows))

    def band(number: int) -> tuple[bytes, int, int]:
        top, bottom = tops[number], min(tops[number] + band_rows, height)
        # The band plus the row above it, which the "Up" filter subtracts.
        above = rows(max(top - 1, 0), bottom).reshape(-1, row_bytes)
        filtered = np.empty((bottom - top, row_bytes + 1), dtype=np.uint8)
        filtered[:, 0] = 2  # filter type "Up"
        if top == 0:
            filtered[0, 1:] = above[0]
            np.subtract(above[1:], above[:-1], out=filtered[1:, 1:])
        else:
            np.subtract(above[1:], above[:-1], out=filtered[:, 1:])
        data = filtered.data  # contiguous bytes, as a memoryview
        deflate = _raw_deflate(compress_level)
        last = number == len(tops) - 1
        body = deflate.compress(data) + deflate.flush(zlib.Z_FINISH if last else zlib.Z_FULL_FLUSH)
        if number == 0:
            body = _ZLIB_HEADER + body
        return _png_chunk(b"IDAT", body), zlib.adler32(data), filtered.size

    workers = min(len(tops), _cpu_count())
    if workers <= 1:
        bands = [band(number) for number in range(len(tops))]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="png") as pool:
            bands = list(pool.map(band, range(len(tops))))
    checksum = 1  # Adler-32 of nothing
    for _, adler, length in bands:
        checksum = _adler32_combine(checksum, adler, length)
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"".join(
        [
            _PNG_SIGNATURE,
            _png_chunk(b"IHDR", header),
            *(chunk for chunk, _, _ in bands),
            _png_chunk(b"IDAT", struct.pack(">I", checksum)),  # the zlib stream's trailer
            _png_chunk(b"IEND", b""),
        ]
    )


def _raw_deflate(level: int) -> _Deflate:
    """A raw deflate stream (no zlib header) at ``level``: ISA-L's levels 1-3, zlib's 0 and
    4-9. ISA-L's level 1 is several times faster than zlib's level 1 on our cutouts, into
    smaller files (benchmarks/decisions.md, "PNG cutouts")."""
    if 1 <= level <= isal_zlib.ISAL_BEST_COMPRESSION:
        return cast(_Deflate, isal_zlib.compressobj(level, isal_zlib.DEFLATED, -15))
    return zlib.compressobj(level, zlib.DEFLATED, -15)


def _cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _adler32_combine(first: int, second: int, second_length: int) -> int:
    """Adler-32 of two buffers joined, from theirs (zlib's ``adler32_combine``)."""
    remainder = second_length % _ADLER_BASE
    sum1 = first & 0xFFFF
    sum2 = (remainder * sum1) % _ADLER_BASE
    sum1 += (second & 0xFFFF) + _ADLER_BASE - 1
    sum2 += (first >> 16) + (second >> 16) + _ADLER_BASE - remainder
    if sum1 >= _ADLER_BASE:
        sum1 -= _ADLER_BASE
    if sum1 >= _ADLER_BASE:
        sum1 -= _ADLER_BASE
    if sum2 >= _ADLER_BASE << 1:
        sum2 -= _ADLER_BASE << 1
    if sum2 >= _ADLER_BASE:
        sum2 -= _ADLER_BASE
    return sum1 | (sum2 << 16)
