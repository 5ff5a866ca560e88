"""Schemathesis against our own /openapi.json: no 5xx, responses match the documented schema."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from stolentee.api.app import create_app
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


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_api_conforms_to_its_schema(case: Any) -> None:
    # Every other default check applies. Not positive_data_acceptance: a request can match the
    # schema and still carry bytes that are no image, or an empty URL; 400 is the right answer.
    case.call_and_validate(
        headers={"X-Api-Key": KEY},
        excluded_checks=[schemathesis.checks.positive_data_acceptance],
    )
