"""Removal fixtures: the real u2netp model (installed on first use) and real sample images."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from stolentee.config import EngineSettings
from stolentee.removal import models
from stolentee.removal.engine import RemovalEngine
from tests.fakes.models_dir import without_local_builds

SKIMAGE_DATA = Path(__import__("skimage").__file__).parent / "data"
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png")


@pytest.fixture(scope="session")
def engine_settings(tmp_path_factory: pytest.TempPathFactory) -> EngineSettings:
    """The installed models (u2netp installed on first use), as a fresh machine has them."""
    settings = EngineSettings()
    if (
        models.model_state(settings.models_dir, models.MODELS["u2netp"])
        is not models.ModelState.INSTALLED
    ):
        models.install(settings.models_dir, "u2netp", models_url=settings.models_url)
    linked = without_local_builds(tmp_path_factory.mktemp("models"))
    return settings.model_copy(update={"models_dir": linked})


@pytest.fixture(scope="session")
def engine(engine_settings: EngineSettings) -> Iterator[RemovalEngine]:
    shared = RemovalEngine(settings=engine_settings.model_copy(update={"max_in_flight": 8}))
    yield shared
    shared.close()


def photo_bytes(name: str) -> bytes:
    return (SKIMAGE_DATA / name).read_bytes()


def encode(image: Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def draw_logo(size: tuple[int, int] = (600, 400), *, supersample: int = 4) -> Image.Image:
    """A ground-truth RGBA logo, anti-aliased by supersampling: a red disc, a blue badge with
    white text inside it, and a dark stroke. No background-coloured hole is enclosed."""
    width, height = size
    s = supersample
    big = Image.new("RGBA", (width * s, height * s), (0, 0, 0, 0))
    draw = ImageDraw.Draw(big)
    draw.ellipse([40 * s, 60 * s, 260 * s, 280 * s], fill=(200, 30, 30, 255))
    draw.rounded_rectangle([300 * s, 100 * s, 560 * s, 300 * s], 30 * s, fill=(20, 40, 160, 255))
    font = ImageFont.load_default(size=48 * s)
    draw.text((330 * s, 170 * s), "TEE", fill=(255, 255, 255, 255), font=font)
    draw.line([60 * s, 340 * s, 540 * s, 360 * s], fill=(25, 25, 25, 255), width=5 * s)
    return big.resize(size, Image.Resampling.LANCZOS)


def composite(artwork: Image.Image, background: Image.Image | tuple[int, int, int]) -> Image.Image:
    if isinstance(background, tuple):
        background = Image.new("RGB", artwork.size, background)
    base = background.convert("RGBA")
    return Image.alpha_composite(base, artwork).convert("RGB")


def iou(a: np.ndarray, b: np.ndarray) -> float:
    first, second = a > 127, b > 127
    union = (first | second).sum()
    return float((first & second).sum() / union) if union else 1.0
