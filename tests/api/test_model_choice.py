"""Choosing the model per request: the ``model`` field of ``POST /v1.0/removebg`` and
``POST /v1/designs`` (an extension beyond Remove.bg's parameters), ``invalid_model`` for what is
not installed, the ``X-Model`` header, the OpenAPI enum, and the premium model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw
from sqlalchemy import select

from stolentee.api.app import create_app
from stolentee.config import EngineSettings
from stolentee.db.models import Job
from stolentee.designs.store import DESIGN_JOB
from stolentee.removal import models

from ..conftest import SettingsFactory
from ..removal.conftest import composite, draw_logo, encode, photo_bytes

KEY = "st_model_choice_key"
PHOTO = photo_bytes("astronaut.png")
LOGO = encode(composite(draw_logo((200, 120)), (255, 255, 255)))
SQUARE = Image.new("RGB", (200, 120), (255, 255, 255))
ImageDraw.Draw(SQUARE).rectangle((40, 30, 160, 90), fill=(200, 30, 30))
FLAT = encode(SQUARE)  # no enclosed background: the colour key alone, no model asked


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    """Only u2netp, whatever else this machine has installed in its own models directory."""
    installed = EngineSettings().models_dir / models.MODELS["u2netp"].filename
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / installed.name).symlink_to(installed)
    return folder


@pytest.fixture
def client(make_settings: SettingsFactory, models_dir: Path) -> Iterator[TestClient]:
    settings = make_settings(api={"api_keys": KEY}, engine={"models_dir": models_dir})
    with TestClient(create_app(settings, run_worker=False), headers={"X-Api-Key": KEY}) as c:
        yield c


def remove(client: TestClient, data: bytes, **fields: str) -> object:
    return client.post(
        "/v1.0/removebg", files={"image_file": ("i.png", data)}, data={"size": "full", **fields}
    )


def test_a_named_model_serves_the_photo_and_says_so(client: TestClient) -> None:
    photo = remove(client, PHOTO, model="u2netp", type="photo")
    assert photo.status_code == 200, photo.text  # type: ignore[attr-defined]
    assert photo.headers["x-model"] == "u2netp"  # type: ignore[attr-defined]
    tier = remove(client, PHOTO, model="fast", type="photo")
    assert tier.headers["x-model"] == "u2netp"  # type: ignore[attr-defined]
    logo = remove(client, FLAT, type="graphic")
    assert logo.headers["x-model"] == "none"  # type: ignore[attr-defined]  # the colour key


@pytest.mark.parametrize(("model", "why"), [("nope", "unknown"), ("quality", "not installed")])
def test_a_model_that_is_not_here_is_invalid_model(
    client: TestClient, model: str, why: str
) -> None:
    for response in (
        remove(client, PHOTO, model=model),
        client.post("/v1/designs", files={"file": ("l.png", LOGO)}, data={"model": model}),
    ):
        assert response.status_code == 400  # type: ignore[attr-defined]
        (error,) = response.json()["errors"]  # type: ignore[attr-defined]
        assert error["code"] == "invalid_model" and why in error["detail"]


def test_a_design_keeps_its_model_for_the_worker(client: TestClient) -> None:
    created = client.post("/v1/designs", files={"file": ("l.png", LOGO)}, data={"model": "fast"})
    assert created.status_code == 202, created.text
    runtime = client.app.state.services.runtime  # type: ignore[attr-defined]
    with runtime.database.session() as session:
        job = session.scalars(select(Job).where(Job.kind == DESIGN_JOB)).one()
        assert job.payload["model"] == "fast"


def test_the_schema_lists_what_may_be_chosen(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    form = paths["/v1.0/removebg"]["post"]["requestBody"]["content"]["multipart/form-data"]
    variants = form["schema"]["properties"]["model"]["anyOf"]
    assert {"enum": ["u2netp", "fast"], "type": "string"} in variants


def test_premium_callers_get_the_premium_model_here(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(removal={"premium_model": "u2netp", "premium_uses_removebg": True})
    with TestClient(create_app(settings, run_worker=False), client=("127.0.0.1", 1)) as client:
        runtime = client.app.state.services.runtime  # type: ignore[attr-defined]
        _, premium = runtime.keys.create("premium-shop", premium=True)
        served = client.post(
            "/v1.0/removebg",
            files={"image_file": ("i.png", PHOTO)},
            data={"size": "full", "type": "photo"},
            headers={"X-Api-Key": premium},
        )
        assert served.status_code == 200, served.text
        assert served.headers["x-model"] == "u2netp"
        created = client.post(
            "/v1/designs", files={"file": ("l.png", LOGO)}, headers={"X-Api-Key": premium}
        )
        with runtime.database.session() as session:
            job = session.scalars(select(Job).where(Job.kind == DESIGN_JOB)).one()
            assert job.payload == {"design_id": created.json()["id"], "premium": True,
                                   "model": "u2netp"}  # fmt: skip
