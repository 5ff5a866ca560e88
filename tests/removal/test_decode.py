"""Untrusted image bytes: every odd input kind decodes; bad input raises our error types."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from stolentee.errors import (
    ImageError,
    InvalidImageError,
    ResolutionTooHighError,
    UnsupportedImageTypeError,
)
from stolentee.removal.imaging.decode import decode_image

from .conftest import encode

LIMIT_MP = 50.0


def rgb_gradient(width: int = 64, height: int = 48) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)
    pixels = np.stack([np.tile(x, (height, 1))] * 3, axis=2)
    pixels[..., 1] = 90
    return Image.fromarray(pixels, mode="RGB")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_common_formats_decode(fmt: str) -> None:
    decoded = decode_image(encode(rgb_gradient(), fmt), max_megapixels=LIMIT_MP)
    assert decoded.image.mode == "RGB"
    assert (decoded.width, decoded.height) == (64, 48)
    assert decoded.has_alpha is False


def test_animated_gif_uses_first_frame() -> None:
    red = Image.new("RGB", (20, 10), (255, 0, 0))
    blue = Image.new("RGB", (20, 10), (0, 0, 255))
    buffer = io.BytesIO()
    red.save(buffer, format="GIF", save_all=True, append_images=[blue], duration=100, loop=0)
    decoded = decode_image(buffer.getvalue(), max_megapixels=LIMIT_MP)
    assert decoded.image.getpixel((5, 5))[:3] == (255, 0, 0)


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (200, 100), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 20, 20))  # white mark at the top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    decoded = decode_image(encode(image, "JPEG", exif=exif, quality=95), max_megapixels=LIMIT_MP)
    assert (decoded.width, decoded.height) == (100, 200)
    # After a clockwise turn the mark is at the top-right.
    assert decoded.image.getpixel((95, 5))[0] > 200
    assert decoded.image.getpixel((5, 5))[0] < 50


def test_palette_with_transparency_becomes_rgba() -> None:
    image = Image.new("P", (10, 10), 0)
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    image.paste(1, (0, 0, 5, 10))
    decoded = decode_image(encode(image, "PNG", transparency=0), max_megapixels=LIMIT_MP)
    assert decoded.image.mode == "RGBA" and decoded.has_alpha
    assert decoded.image.getpixel((8, 5))[3] == 0
    assert decoded.image.getpixel((2, 5)) == (0, 255, 0, 255)


def test_palette_without_transparency_becomes_rgb() -> None:
    image = rgb_gradient().convert("P")
    decoded = decode_image(encode(image, "PNG"), max_megapixels=LIMIT_MP)
    assert decoded.image.mode == "RGB" and not decoded.has_alpha


@pytest.mark.parametrize(("mode", "has_alpha"), [("L", False), ("LA", True), ("1", False)])
def test_greyscale_modes(mode: str, has_alpha: bool) -> None:
    image = rgb_gradient().convert("LA")
    image.putalpha(Image.new("L", image.size, 128))
    decoded = decode_image(encode(image.convert(mode), "PNG"), max_megapixels=LIMIT_MP)
    assert decoded.image.mode == ("RGBA" if has_alpha else "RGB")
    assert decoded.has_alpha is has_alpha


def test_opaque_alpha_is_not_reported_as_transparency() -> None:
    decoded = decode_image(encode(rgb_gradient().convert("RGBA"), "PNG"), max_megapixels=LIMIT_MP)
    assert decoded.has_alpha is False


def test_cmyk_jpeg_becomes_rgb() -> None:
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # pure red in CMYK
    decoded = decode_image(encode(cmyk, "JPEG", quality=95), max_megapixels=LIMIT_MP)
    assert decoded.image.mode == "RGB"
    red, green, blue = decoded.image.getpixel((16, 16))[:3]
    assert red > 200 and green < 60 and blue < 60


def test_sixteen_bit_greyscale_is_scaled_to_eight_bits() -> None:
    values = np.full((16, 16), 65535, dtype=np.uint16)
    values[:, :8] = 32768
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    decoded = decode_image(encode(image, "PNG"), max_megapixels=LIMIT_MP)
    assert decoded.image.getpixel((12, 4)) == (255, 255, 255)
    assert decoded.image.getpixel((2, 4))[0] in (127, 128)


def test_empty_input() -> None:
    with pytest.raises(InvalidImageError, match="empty"):
        decode_image(b"", max_megapixels=LIMIT_MP)


def test_non_image_input() -> None:
    with pytest.raises(UnsupportedImageTypeError):
        decode_image(b"%PDF-1.7 definitely not an image", max_megapixels=LIMIT_MP)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_truncated_input(fmt: str) -> None:
    data = encode(rgb_gradient(256, 256), fmt)
    with pytest.raises(InvalidImageError):
        decode_image(data[: len(data) // 2], max_megapixels=LIMIT_MP)


def test_corrupt_header_with_known_signature() -> None:
    data = b"II*\x00" + b"\x00" * 64
    with pytest.raises(InvalidImageError, match="looks like TIFF"):
        decode_image(data, max_megapixels=LIMIT_MP)


def test_decompression_bomb_is_refused_before_decoding() -> None:
    bomb = encode(Image.new("1", (20_000, 20_000)), "PNG")  # 400 MP in a few kB
    assert len(bomb) < 200_000
    with pytest.raises(ResolutionTooHighError, match="at most 50 MP is accepted"):
        decode_image(bomb, max_megapixels=LIMIT_MP)


def test_resolution_limit_is_configurable() -> None:
    with pytest.raises(ResolutionTooHighError):
        decode_image(encode(rgb_gradient(2000, 1000), "PNG"), max_megapixels=1.0)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    try:
        decoded = decode_image(data, max_megapixels=LIMIT_MP)
    except ImageError:
        return
    assert decoded.image.mode in ("RGB", "RGBA")


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=1, max_value=4000), st.data())
def test_damaged_png_never_crashes(cut: int, data: st.DataObject) -> None:
    original = bytearray(encode(rgb_gradient(40, 30), "PNG"))
    position = data.draw(st.integers(min_value=0, max_value=len(original) - 1))
    original[position] ^= 0xFF
    damaged = bytes(original[: max(1, min(cut, len(original)))])
    with contextlib.suppress(ImageError):
        decode_image(damaged, max_megapixels=LIMIT_MP)
