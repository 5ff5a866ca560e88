"""Schemathesis against our own /openapi.json: no 5xx, responses match the documented schema."""

from __future__ import annotations

import base64
import io
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw
from schemathesis.core.mutations import OperatorKind

from stolentee.api.app import create_app
from stolentee.api.openapi import BASE64_IMAGE_FORMAT, IMAGE_MEDIA_TYPES, ROI_FORMAT
from stolentee.config import ApiSettings, DatabaseSettings, ServiceSettings, Settings

KEY = "st_fuzz_key"
_DATA_DIR = Path(tempfile.mkdtemp(prefix="stolentee-fuzz-"))
APP = create_app(
    Settings(
        service=ServiceSettings(data_dir=_DATA_DIR),
        database=DatabaseSettings(url=f"sqlite:///{_DATA_DIR / 'fuzz.db'}"),
        api=ApiSettings(api_keys=KEY),
    )
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def _running_app() -> Iterator[None]:
    with TestClient(APP):  # runs the lifespan, so the app's services exist
        yield


FUZZ = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# What the schema names but cannot spell out (stolentee.api.openapi): image files, base64 images
# and Remove.bg regions. These strategies draw values of those kinds: designs (a shape on a plain
# background, so that there is a subject to find) in every format the decoder reads.
@st.composite
def design_images(draw: st.DrawFn, image_format: str) -> bytes:
    width, height = draw(st.integers(24, 96)), draw(st.integers(24, 96))
    background = draw(st.sampled_from([(255, 255, 255), (250, 235, 200), (20, 20, 20)]))
    subject = (200, 30, 40) if background != (200, 30, 40) else (30, 30, 200)
    image = Image.new("RGB", (width, height), background)
    ImageDraw.Draw(image).ellipse(
        (width // 4, height // 4, 3 * width // 4, 3 * height // 4), fill=subject
    )
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


for _media_type in IMAGE_MEDIA_TYPES:  # image/png -> PIL's PNG
    schemathesis.openapi.media_type(_media_type, design_images(_media_type[6:].upper()))
schemathesis.openapi.format(
    BASE64_IMAGE_FORMAT,
    design_images("PNG").map(lambda data: base64.b64encode(data).decode()),
)


@st.composite
def regions(draw: st.DrawFn) -> str:
    """A region around the image's centre (the subject): percents, or pixels clamped to it."""
    if draw(st.booleans()):
        x1, y1 = draw(st.integers(0, 20)), draw(st.integers(0, 20))
        x2, y2 = draw(st.integers(80, 100)), draw(st.integers(80, 100))
        return f"{x1}% {y1}% {x2}% {y2}%"
    return f"0px 0 {draw(st.integers(2000, 99999))} {draw(st.integers(2000, 99999))}px"


schemathesis.openapi.format(ROI_FORMAT, regions())


def _indistinguishable_on_the_wire(case: Any) -> bool:
    """A negative multipart case whose every mutation turns a field into an array or null.

    multipart/form-data carries text parts only: an "array" is that many repeated parts, so
    ``[]`` and ``null`` are an absent field and ``["x"]`` is the field ``x``. Such a request is
    byte for byte a schema-valid one, so whether the server refuses it says nothing.
    """
    meta = case._meta
    if case.media_type != "multipart/form-data" or meta is None:
        return False
    if not meta.generation.mode.is_negative:
        return False
    mutations = getattr(meta.phase.data, "mutations", ())
    return bool(mutations) and all(
        mutation.operator is OperatorKind.CHANGE_TYPE and mutation.new_value in ("array", "null")
        for mutation in mutations
    )


@schema.parametrize()
@FUZZ
def test_api_accepts_what_its_schema_allows_and_answers_as_documented(case: Any) -> None:
    excluded = []
    if _indistinguishable_on_the_wire(case):
        excluded.append(schemathesis.checks.negative_data_rejection)
    case.call_and_validate(headers={"X-Api-Key": KEY}, excluded_checks=excluded)
