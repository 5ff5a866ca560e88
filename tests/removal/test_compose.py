"""Output options applied to a known image and matte: roi, crop, scale, position, background,
channels and formats."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from stolentee.errors import (
    InvalidChannelsError,
    InvalidPositionError,
    InvalidRoiError,
    InvalidScaleError,
)
from stolentee.removal.base import (
    Foreground,
    OutputFormat,
    RemovalOptions,
    parse_channels,
    parse_position,
    parse_roi,
    parse_scale,
)
from stolentee.removal.imaging.compose import compose

WIDTH, HEIGHT = 200, 100


def subject() -> tuple[Image.Image, Image.Image]:
    """Red image with a 40x20 opaque square matte at (30, 40) and a 10x10 one at (150, 10)."""
    rgb = Image.new("RGB", (WIDTH, HEIGHT), (220, 20, 20))
    alpha = Image.new("L", (WIDTH, HEIGHT), 0)
    alpha.paste(255, (30, 40, 70, 60))
    alpha.paste(255, (150, 10, 160, 20))
    return rgb, alpha


def run(**options: object) -> tuple[Image.Image, object]:
    rgb, alpha = subject()
    composed = compose(rgb, alpha, RemovalOptions(**options), png_compress_level=1)  # type: ignore[arg-type]
    image = (
        Image.open(io.BytesIO(composed.data))
        if composed.content_type != "application/zip"
        else None
    )
    return image, composed  # type: ignore[return-value]


def test_foreground_box_spans_every_subject_part() -> None:
    _, composed = run()
    assert composed.foreground == Foreground(top=10, left=30, width=130, height=50)


def test_roi_clears_the_matte_outside_it() -> None:
    image, composed = run(roi=parse_roi("0% 0% 50% 100%"))
    alpha = np.asarray(image.getchannel("A"))
    assert alpha[15, 155] == 0 and alpha[50, 50] == 255
    assert composed.foreground.left == 30 and composed.foreground.width == 40


def test_crop_with_percent_margin() -> None:
    image, _ = run(roi=parse_roi("0 0 100 100"), crop=True, crop_margin_percent=50.0)
    assert image.size == (80, 40)  # 40x20 subject + 50% of each side


def test_scale_and_position() -> None:
    image, composed = run(roi=parse_roi("0 0 100 100"), scale=0.5)
    # 40x20 box scaled to fit half the canvas: factor 0.5 * min(200/40, 100/20) = 2.5 → 100x50.
    assert (composed.foreground.width, composed.foreground.height) == (100, 50)
    assert (composed.foreground.left, composed.foreground.top) == (50, 25)  # centred
    _, top_left = run(roi=parse_roi("0 0 100 100"), position=parse_position("0% 0%"))
    assert (top_left.foreground.left, top_left.foreground.top) == (0, 0)
    _, bottom_right = run(roi=parse_roi("0 0 100 100"), position=parse_position("100%"))
    assert (bottom_right.foreground.left, bottom_right.foreground.top) == (160, 80)
    assert image.size == (WIDTH, HEIGHT)


def test_auto_format_is_png_with_transparency_and_jpg_without() -> None:
    transparent, composed = run(format=OutputFormat.AUTO)
    assert transparent.format == "PNG" and composed.content_type == "image/png"
    opaque, composed = run(format=OutputFormat.AUTO, bg_color=(0, 0, 255, 255))
    assert opaque.format == "JPEG" and composed.content_type == "image/jpeg"


def test_zip_holds_colour_and_alpha() -> None:
    _, composed = run(format=OutputFormat.ZIP)
    with zipfile.ZipFile(io.BytesIO(composed.data)) as archive:
        assert sorted(archive.namelist()) == ["alpha.png", "color.jpg"]
        colour = Image.open(io.BytesIO(archive.read("color.jpg")))
        alpha = Image.open(io.BytesIO(archive.read("alpha.png")))
    assert colour.mode == "RGB" and alpha.mode == "L"
    assert colour.size == alpha.size == (WIDTH, HEIGHT)
    assert alpha.getpixel((50, 50)) == 255 and alpha.getpixel((5, 5)) == 0


def test_background_image_covers_the_canvas() -> None:
    rgb, alpha = subject()
    backdrop = Image.new("RGB", (50, 50), (0, 200, 0))
    composed = compose(
        rgb, alpha, RemovalOptions(), png_compress_level=1, background_image=backdrop
    )
    image = Image.open(io.BytesIO(composed.data))
    assert image.mode == "RGB" and image.size == (WIDTH, HEIGHT)
    assert image.getpixel((5, 5)) == (0, 200, 0)
    assert image.getpixel((50, 50)) == (220, 20, 20)


def test_alpha_channel_only() -> None:
    image, _ = run(alpha_only=True, format=OutputFormat.AUTO)
    assert image.mode == "L" and image.format == "PNG"


@pytest.mark.parametrize(
    "value", ["", "1 2 3", "0 0 -1 5", "a b c d", "10 10 5 20", "0% 0% 150% 10%"]
)
def test_bad_roi(value: str) -> None:
    with pytest.raises(InvalidRoiError):
        parse_roi(value)


@pytest.mark.parametrize("value", ["5%", "101%", "big", ""])
def test_bad_scale(value: str) -> None:
    with pytest.raises(InvalidScaleError):
        parse_scale(value)


@pytest.mark.parametrize("value", ["left", "10px", "10% 20% 30%", "-5%", ""])
def test_bad_position(value: str) -> None:
    with pytest.raises(InvalidPositionError):
        parse_position(value)


def test_channels() -> None:
    assert parse_channels("alpha") is True and parse_channels("RGBA") is False
    with pytest.raises(InvalidChannelsError):
        parse_channels("rgb")


# --- PNG encoding in parallel bands ---------------------------------------------------------------


def photo_cutout(width: int, height: int) -> Image.Image:
    """A real photo scaled up, with a soft elliptical matte and zeroed invisible pixels."""
    from stolentee.removal.imaging.compose import _transparent_cutout

    from .conftest import SKIMAGE_DATA

    rgb = Image.open(SKIMAGE_DATA / "astronaut.png").convert("RGB").resize((width, height))
    y, x = np.mgrid[0:height, 0:width]
    r = np.hypot((x - width / 2) / (0.4 * width), (y - height / 2) / (0.45 * height))
    alpha = np.clip((1.1 - r) * 10 * 255, 0, 255).astype(np.uint8)
    return _transparent_cutout(rgb, Image.fromarray(alpha))


@pytest.mark.parametrize("mode", ["RGBA", "RGB", "L"])
@pytest.mark.parametrize("level", [0, 1, 6])
def test_banded_png_decodes_to_the_same_pixels(
    monkeypatch: pytest.MonkeyPatch, mode: str, level: int
) -> None:
    """Many bands (a few rows each, the last one shorter), decoded by Pillow and by OpenCV's
    libpng: identical pixels, and a valid stream (checksums are verified by both)."""
    import cv2

    from stolentee.removal.imaging import png as module

    monkeypatch.setattr(module, "PNG_BAND_BYTES", 40_000)
    image = photo_cutout(1001, 667).convert(mode)
    data = module.encode_png(image, level)
    assert data.count(b"IDAT") > 10
    decoded = Image.open(io.BytesIO(data))
    decoded.load()
    assert decoded.mode == mode
    assert np.array_equal(np.asarray(decoded), np.asarray(image))
    flags = cv2.IMREAD_UNCHANGED
    with_cv2 = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if mode == "RGBA":
        with_cv2 = cv2.cvtColor(with_cv2, cv2.COLOR_BGRA2RGBA)
    elif mode == "RGB":
        with_cv2 = cv2.cvtColor(with_cv2, cv2.COLOR_BGR2RGB)
    assert np.array_equal(with_cv2, np.asarray(image))


def test_banded_png_of_a_large_cutout_is_deterministic_and_compact() -> None:
    """At 4 MP the default bands are used: the bytes do not depend on the thread count, and
    the file is within a few per cent of Pillow's (adaptive filters, one thread)."""
    from stolentee.removal.imaging import png as module

    image = photo_cutout(2400, 1700)
    first = module.encode_png(image, 1)
    assert first.count(b"IDAT") > 2
    assert module.encode_png(image, 1) == first
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    assert len(first) <= 1.1 * len(buffer.getbuffer())
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(first))), np.asarray(image))


@pytest.mark.parametrize("level", [0, 1, 6])
def test_cutout_png_is_the_transparent_cutout(monkeypatch: pytest.MonkeyPatch, level: int) -> None:
    """encode_cutout_png builds each band's RGBA rows itself: the file decodes to exactly the
    pixels of _transparent_cutout (invisible pixels zeroed), in many bands and in one."""
    from stolentee.removal.imaging import compose as compose_module
    from stolentee.removal.imaging import png as module

    from .conftest import SKIMAGE_DATA

    rgb = Image.open(SKIMAGE_DATA / "astronaut.png").convert("RGB").resize((1001, 667))
    x = np.mgrid[0:667, 0:1001][1]
    alpha = Image.fromarray(np.clip((x - 300) * 3, 0, 255).astype(np.uint8))  # 0, ramp, 255
    expected = np.asarray(compose_module._transparent_cutout(rgb, alpha))
    assert (expected[..., :3][expected[..., 3] == 0] == 0).all()
    assert expected[..., :3].any()
    for band_bytes in (40_000, 1 << 30):
        monkeypatch.setattr(module, "PNG_BAND_BYTES", band_bytes)
        data = module.encode_cutout_png(rgb, alpha, level)
        decoded = Image.open(io.BytesIO(data))
        decoded.load()
        assert decoded.mode == "RGBA"
        assert np.array_equal(np.asarray(decoded), expected)


def test_compose_encodes_transparent_cutouts_band_by_band(monkeypatch: pytest.MonkeyPatch) -> None:
    """A transparent PNG result (the default) goes through encode_cutout_png; an opaque matte
    in auto format still becomes a JPEG, and a background colour still flattens."""
    from stolentee.removal.imaging import compose as module

    calls: list[tuple[int, int]] = []
    original = module.encode_cutout_png

    def spy(rgb: Image.Image, alpha: Image.Image, level: int) -> bytes:
        calls.append(rgb.size)
        return original(rgb, alpha, level)

    monkeypatch.setattr(module, "encode_cutout_png", spy)
    rgb = Image.new("RGB", (40, 30), (200, 10, 10))
    half = np.zeros((30, 40), dtype=np.uint8)
    half[:, 20:] = 255
    png = module.compose(rgb, Image.fromarray(half), RemovalOptions(), png_compress_level=1)
    assert png.content_type == "image/png" and calls == [(40, 30)]
    opaque = module.compose(
        rgb,
        Image.new("L", (40, 30), 255),
        RemovalOptions(format=OutputFormat.AUTO),
        png_compress_level=1,
    )
    assert opaque.content_type == "image/jpeg"
    coloured = module.compose(
        rgb,
        Image.fromarray(half),
        RemovalOptions(bg_color=(0, 0, 255, 255), format=OutputFormat.PNG),
        png_compress_level=1,
    )
    assert coloured.content_type == "image/png" and calls == [(40, 30)]
    assert Image.open(io.BytesIO(coloured.data)).mode == "RGB"


def test_adler32_combine_matches_zlib() -> None:
    import zlib

    from stolentee.removal.imaging.png import _adler32_combine

    rng = np.random.default_rng(1)
    for length_a, length_b in [(0, 0), (1, 0), (0, 7), (5, 65521), (70000, 131042), (3, 200000)]:
        a = rng.integers(0, 256, length_a, dtype=np.uint8).tobytes()
        b = rng.integers(0, 256, length_b, dtype=np.uint8).tobytes()
        combined = _adler32_combine(zlib.adler32(a), zlib.adler32(b), len(b))
        assert combined == zlib.adler32(a + b)
