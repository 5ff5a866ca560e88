"""PNG files written fast: rows filtered and deflated in bands on every core (ISA-L at the fast
levels), concatenated into one valid zlib stream, the same bytes on every machine."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, cast

import cv2
import numpy as np
from isal import isal_zlib
from numpy.typing import NDArray
from PIL import Image

from stolentee.removal.imaging.cpus import available_cpus

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

    workers = min(len(tops), available_cpus())
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
