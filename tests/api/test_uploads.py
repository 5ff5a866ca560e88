"""Direct browser uploads to the S3 bucket (presigned POST), then a design from the upload.

Runs the whole service on the S3 backend (the real SeaweedFS of the test session): the design's
original and cutout are stored in the bucket and served by the service's file routes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from stolentee.api.app import create_app

from ..conftest import SettingsFactory
from .test_designs import HEADERS, KEY, LOGO, wait_for


@pytest.fixture
def s3_client(
    make_settings: SettingsFactory,
    s3_storage_settings: Callable[..., dict[str, Any]],
    s3_buckets: Callable[[], str],
) -> Iterator[TestClient]:
    settings = make_settings(
        api={"api_keys": f"{KEY},st_other_caller_key"},
        queue={"reaper_interval_s": 1.0},
        storage={"backend": "s3", "presign_max_upload_mb": 1, **s3_storage_settings(s3_buckets())},
    )
    with TestClient(create_app(settings)) as client:
        yield client


def presign(client: TestClient, content_type: str = "image/png", **headers: str) -> Any:
    return client.post(
        "/v1/uploads/presign", json={"content_type": content_type}, headers={**HEADERS, **headers}
    )


def browser_upload(form: dict[str, Any], data: bytes, content_type: str) -> httpx.Response:
    upload = form["upload"]
    return httpx.post(
        upload["url"], data=upload["fields"], files={"file": ("design", data, content_type)}
    )


def test_direct_upload_then_design_on_s3(s3_client: TestClient) -> None:
    response = presign(s3_client)
    assert response.status_code == 200, response.text
    form = response.json()
    assert form["upload"]["method"] == "POST"
    assert form["key"].startswith("uploads/direct/") and form["key"].endswith(".png")
    assert form["max_bytes"] == 1024 * 1024
    assert browser_upload(form, LOGO, "image/png").status_code in (200, 201, 204)

    created = s3_client.post("/v1/designs", data={"upload_key": form["key"]}, headers=HEADERS)
    assert created.status_code == 202, created.text
    design = created.json()
    assert design["original"]["url"] == "/" + form["key"]
    done = wait_for(s3_client, design["id"])
    assert done["status"] == "done", done
    cutout = s3_client.get(done["cutout"]["url"])
    assert cutout.status_code == 200
    assert cutout.headers["Cache-Control"] == "public, max-age=604800, immutable"
    original = s3_client.get(done["original"]["url"])
    assert original.content == LOGO


def test_the_bucket_enforces_size_and_type(s3_client: TestClient) -> None:
    form = presign(s3_client).json()
    assert browser_upload(form, b"x" * (1024 * 1024 + 1), "image/png").status_code == 400
    tampered = {**form, "upload": {**form["upload"]}}
    tampered["upload"]["fields"] = {**form["upload"]["fields"], "Content-Type": "text/html"}
    assert browser_upload(tampered, b"<script>", "text/html").status_code == 403
    missing = s3_client.post("/v1/designs", data={"upload_key": form["key"]}, headers=HEADERS)
    assert missing.status_code == 400
    assert missing.json()["errors"][0]["code"] == "invalid_upload_key"


def test_an_upload_key_is_usable_only_by_its_owner(s3_client: TestClient) -> None:
    form = presign(s3_client).json()
    assert browser_upload(form, LOGO, "image/png").status_code in (200, 201, 204)
    other = {"X-Api-Key": "st_other_caller_key"}
    stolen = s3_client.post("/v1/designs", data={"upload_key": form["key"]}, headers=other)
    assert stolen.status_code == 400
    assert stolen.json()["errors"][0]["code"] == "invalid_upload_key"
    for bad in ("uploads/x.png", "../etc/passwd", form["key"] + "x"):
        answer = s3_client.post("/v1/designs", data={"upload_key": bad}, headers=HEADERS)
        assert answer.status_code == 400, bad


def test_a_non_image_upload_is_refused_when_the_design_is_created(s3_client: TestClient) -> None:
    form = presign(s3_client).json()
    assert browser_upload(form, b"not an image at all", "image/png").status_code in (200, 204)
    answer = s3_client.post("/v1/designs", data={"upload_key": form["key"]}, headers=HEADERS)
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["code"] == "invalid_file_type"


def test_bad_requests(s3_client: TestClient) -> None:
    assert presign(s3_client, "text/html").status_code == 400
    assert presign(s3_client, "image/png", **{"X-Api-Key": "wrong"}).status_code == 403
    both = s3_client.post(
        "/v1/designs",
        data={"upload_key": "uploads/direct/x.png"},
        files={"file": ("logo.png", LOGO)},
        headers=HEADERS,
    )
    assert both.status_code == 400
    assert both.json()["errors"][0]["code"] == "invalid_design_source"
    neither = s3_client.post("/v1/designs", data={"type": "auto"}, headers=HEADERS)
    assert neither.status_code == 400


def test_local_storage_cannot_presign(make_settings: SettingsFactory) -> None:
    with TestClient(create_app(make_settings(api={"api_keys": KEY}))) as client:
        response = presign(client)
    assert response.status_code == 409
    assert response.json()["errors"][0]["code"] == "presign_unsupported"
