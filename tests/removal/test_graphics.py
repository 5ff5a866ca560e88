"""The colour-key path on generated artwork with known ground truth."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from stolentee.removal import graphics

from .conftest import PHOTOS, SKIMAGE_DATA, composite, draw_logo, iou


def cut(image: Image.Image) -> tuple[graphics.BorderAnalysis, graphics.GraphicCut]:
    pixels = np.asarray(image.convert("RGB"))
    analysis = graphics.analyse_border(pixels)
    return analysis, graphics.colour_key(pixels, analysis)


@pytest.mark.parametrize("background", [(255, 255, 255), (40, 170, 90), (0, 0, 0)])
def test_logo_on_solid_colour(background: tuple[int, int, int]) -> None:
    logo = draw_logo()
    truth = np.asarray(logo.getchannel("A"))
    analysis, result = cut(composite(logo, background))
    assert analysis.is_plain and not analysis.is_gradient
    assert iou(result.alpha, truth) >= 0.99
    assert np.abs(result.alpha.astype(float) - truth).mean() / 255 <= 0.004


def test_anti_aliased_edges_get_partial_alpha() -> None:
    logo = draw_logo()
    truth = np.asarray(logo.getchannel("A")).astype(float)
    _, result = cut(composite(logo, (255, 255, 255)))
    edge = (truth > 20) & (truth < 235)
    assert edge.sum() > 500
    ours = result.alpha.astype(float)[edge]
    assert np.abs(ours - truth[edge]).mean() < 40  # tracks the true coverage, not 0/255
    assert ((ours > 0) & (ours < 255)).mean() > 0.5


def test_white_text_inside_artwork_stays() -> None:
    """Background-coloured regions enclosed by artwork are kept (white text in a badge)."""
    logo = draw_logo()
    _, result = cut(composite(logo, (255, 255, 255)))
    letters = np.asarray(logo)[..., :3].min(axis=2) > 240  # the white "TEE" pixels
    letters &= np.asarray(logo.getchannel("A")) == 255
    assert letters.sum() > 200
    assert (result.alpha[letters] == 255).mean() > 0.99


def test_edges_are_decontaminated() -> None:
    """Black artwork on white: semi-transparent edge pixels are black, not grey."""
    size = 4
    big = Image.new("RGBA", (400 * size, 200 * size), (0, 0, 0, 0))
    font = ImageFont.load_default(size=120 * size)
    ImageDraw.Draw(big).text((20 * size, 20 * size), "Hi!", fill=(0, 0, 0, 255), font=font)
    art = big.resize((400, 200), Image.Resampling.LANCZOS)
    on_white = composite(art, (255, 255, 255))
    _, result = cut(on_white)
    partial = (result.alpha > 30) & (result.alpha < 225)
    assert partial.sum() > 100
    grey_before = np.asarray(on_white)[partial].mean()
    after = result.rgb[partial].mean()
    assert grey_before > 100  # the composite's edges are tinted by the white background
    assert after < 40


def test_near_white_artwork_on_white() -> None:
    art = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    ImageDraw.Draw(art).rectangle([60, 60, 240, 240], fill=(236, 236, 236, 255))
    _, result = cut(composite(art, (255, 255, 255)))
    assert (result.alpha[70:230, 70:230] == 255).all()
    assert (result.alpha[:50] == 0).all()
    assert iou(result.alpha, np.asarray(art.getchannel("A"))) >= 0.99


def test_gradient_background() -> None:
    width, height = 600, 400
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    start = np.array([250, 200, 120], dtype=np.float32)
    end = np.array([120, 160, 240], dtype=np.float32)
    shade = start + (end - start) * (0.7 * x + 0.3 * y)
    background = Image.fromarray(shade.astype(np.uint8), mode="RGB")
    logo = draw_logo((width, height))
    analysis, result = cut(composite(logo, background))
    assert analysis.is_plain and analysis.is_gradient
    assert iou(result.alpha, np.asarray(logo.getchannel("A"))) >= 0.97


def test_artwork_touching_the_border_is_still_plain() -> None:
    art = Image.new("RGBA", (400, 300), (0, 0, 0, 0))
    ImageDraw.Draw(art).rectangle([0, 100, 30, 160], fill=(10, 10, 10, 255))  # on the edge
    ImageDraw.Draw(art).ellipse([100, 50, 300, 250], fill=(200, 0, 0, 255))
    analysis, result = cut(composite(art, (255, 255, 255)))
    assert analysis.is_plain
    assert iou(result.alpha, np.asarray(art.getchannel("A"))) >= 0.99


@pytest.mark.parametrize("name", PHOTOS)
def test_photos_are_not_plain(name: str) -> None:
    pixels = np.asarray(Image.open(SKIMAGE_DATA / name).convert("RGB"))
    assert not graphics.analyse_border(pixels).is_plain


def test_tiny_images() -> None:
    for size in [(1, 1), (2, 3), (5, 1)]:
        pixels = np.full((size[1], size[0], 3), 255, dtype=np.uint8)
        analysis = graphics.analyse_border(pixels)
        result = graphics.colour_key(pixels, analysis)
        assert result.alpha.shape == (size[1], size[0])
