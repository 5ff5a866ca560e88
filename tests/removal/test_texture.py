"""Artwork on a textured background: the model's matte refined by a graph cut (real model)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from stolentee.removal.base import ImageKind, RemovalOptions
from stolentee.removal.engine import RemovalEngine
from stolentee.removal.imaging import texture

from .conftest import PHOTOS, SKIMAGE_DATA, composite, encode, iou, photo_bytes

SIZE = (640, 560)


def draw_cartoon(size: tuple[int, int] = SIZE, *, supersample: int = 4) -> Image.Image:
    """A ground-truth RGBA cartoon: flat fills with a dark outline, a black body and legs (dark
    parts that a grey texture's grains resemble), eyes and a mouth."""
    width, height = size
    s = supersample
    big = Image.new("RGBA", (width * s, height * s), (0, 0, 0, 0))
    draw = ImageDraw.Draw(big)
    draw.rectangle([250 * s, 400 * s, 270 * s, 520 * s], fill=(20, 20, 20, 255))  # legs
    draw.rectangle([370 * s, 400 * s, 390 * s, 520 * s], fill=(20, 20, 20, 255))
    draw.ellipse([170 * s, 260 * s, 470 * s, 460 * s], fill=(25, 25, 25, 255))  # body
    draw.ellipse(
        [180 * s, 60 * s, 460 * s, 340 * s],
        fill=(250, 240, 150, 255),
        outline=(10, 10, 10, 255),
        width=8 * s,
    )  # head
    for left in (250, 350):
        draw.ellipse([left * s, 150 * s, (left + 40) * s, 190 * s], fill=(255, 255, 255, 255))
        draw.ellipse([(left + 12) * s, 162 * s, (left + 28) * s, 178 * s], fill=(10, 10, 10, 255))
    draw.rounded_rectangle([270 * s, 250 * s, 370 * s, 285 * s], 12 * s, fill=(230, 60, 70, 255))
    draw.polygon(
        [(290 * s, 330 * s), (350 * s, 330 * s), (320 * s, 370 * s)], fill=(200, 40, 30, 255)
    )  # bow tie
    return big.resize(size, Image.Resampling.LANCZOS)


def texture_background(name: str, size: tuple[int, int] = SIZE) -> Image.Image:
    """scikit-image's texture photo (grass, gravel, brick), tiled to ``size``, in RGB."""
    with Image.open(SKIMAGE_DATA / name) as tile:
        tile = tile.convert("RGB")
        canvas = Image.new("RGB", size)
        for top in range(0, size[1], tile.height):
            for left in range(0, size[0], tile.width):
                canvas.paste(tile, (left, top))
    return canvas


@pytest.mark.parametrize("background", ["gravel.png", "grass.png"])
def test_artwork_on_a_texture_is_cut_closer_than_by_the_model(
    engine: RemovalEngine, background: str
) -> None:
    cartoon = draw_cartoon()
    truth = np.asarray(cartoon.getchannel("A"))
    data = encode(composite(cartoon, texture_background(background)))

    refined = engine.remove(data)
    assert refined.kind is ImageKind.GRAPHIC
    assert refined.method == "model+graph-cut:u2netp"
    model_only = engine.remove(data, RemovalOptions(kind=ImageKind.PHOTO))
    assert model_only.method == "model:u2netp"  # an explicit photo is never refined

    ours = np.asarray(Image.open(io.BytesIO(refined.data)).getchannel("A"))
    models = np.asarray(Image.open(io.BytesIO(model_only.data)).getchannel("A"))
    assert iou(ours, truth) >= 0.95
    assert iou(ours, truth) > iou(models, truth) + 0.01
    # Mostly hard edges, like the artwork's own: few pixels in between.
    assert np.mean((ours > 10) & (ours < 245)) < np.mean((models > 10) & (models < 245))


@pytest.mark.parametrize("name", PHOTOS)
def test_photos_are_not_taken_for_artwork(engine: RemovalEngine, name: str) -> None:
    with Image.open(io.BytesIO(photo_bytes(name))) as image:
        rgb = np.asarray(image.convert("RGB"))
    alpha, kind = engine.matte(photo_bytes(name))
    assert kind is ImageKind.PHOTO
    assert not texture.is_artwork_on_texture(rgb, alpha)


def test_artwork_on_a_plain_colour_is_not_texture() -> None:
    cartoon = draw_cartoon()
    rgb = np.asarray(composite(cartoon, (40, 120, 200)))
    assert not texture.is_artwork_on_texture(rgb, np.asarray(cartoon.getchannel("A")))


def test_the_test_needs_both_a_subject_and_a_background() -> None:
    rgb = np.asarray(texture_background("gravel.png"))
    height, width = rgb.shape[:2]
    for level in (0, 255):
        assert not texture.is_artwork_on_texture(rgb, np.full((height, width), level, np.uint8))


@pytest.mark.parametrize("level", [0, 255])
def test_a_matte_confident_everywhere_is_kept(level: int) -> None:
    """Nothing is left for the cut to decide: the model's matte comes back, upscaled."""
    rgb = np.asarray(texture_background("gravel.png"))
    refined = texture.refine(rgb, np.full((320, 320), level, np.uint8))
    assert refined.shape == rgb.shape[:2]
    assert np.all(refined == level)
