"""process_design: original in storage → content-addressed cutout in storage."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from stolentee.config import EngineSettings
from stolentee.designs.pipeline import CUTOUTS_PREFIX, design_options, process_design
from stolentee.errors import InvalidFormatError, ObjectNotFoundError
from stolentee.removal.engine import RemovalEngine
from stolentee.storage.backends.memory import MemoryStorage

from .removal.conftest import composite, draw_logo, encode


@pytest.fixture(scope="module")
def engine() -> RemovalEngine:
    return RemovalEngine(settings=EngineSettings())


def test_cutout_is_content_addressed_and_idempotent(engine: RemovalEngine) -> None:
    storage = MemoryStorage()
    original = encode(composite(draw_logo(), (255, 255, 255)))
    storage.put("uploads/d1/original.png", original, content_type="image/png")
    options = design_options("auto", "png")

    first = process_design(
        storage=storage, remover=engine, original_key="uploads/d1/original.png", options=options
    )
    second = process_design(
        storage=storage, remover=engine, original_key="uploads/d1/original.png", options=options
    )
    assert first.cutout_key == second.cutout_key
    assert first.cutout_key.startswith(CUTOUTS_PREFIX) and first.cutout_key.endswith(".png")
    cutouts = [info.key for info in storage.iterate(CUTOUTS_PREFIX)]
    assert cutouts == [first.cutout_key]
    stored = storage.head(first.cutout_key)
    assert stored.content_type == "image/png"
    assert first.cutout_key == f"{CUTOUTS_PREFIX}{stored.sha256}.png"
    assert Image.open(io.BytesIO(storage.get(first.cutout_key))).mode == "RGBA"
    assert storage.get("uploads/d1/original.png") == original  # the original is never touched
    assert first.kind == "graphic" and first.provider == "local"
    assert first.foreground is not None and first.timings_ms["total"] > 0


def test_webp_cutout(engine: RemovalEngine) -> None:
    storage = MemoryStorage()
    storage.put("uploads/x.png", encode(composite(draw_logo(), (0, 0, 0))))
    outcome = process_design(
        storage=storage,
        remover=engine,
        original_key="uploads/x.png",
        options=design_options("graphic", "webp"),
    )
    assert outcome.cutout_key.endswith(".webp") and outcome.content_type == "image/webp"


def test_bad_format_and_missing_original(engine: RemovalEngine) -> None:
    with pytest.raises(InvalidFormatError):
        design_options("auto", "zip")
    with pytest.raises(ObjectNotFoundError):
        process_design(
            storage=MemoryStorage(),
            remover=engine,
            original_key="uploads/missing.png",
            options=design_options("auto", "png"),
        )
