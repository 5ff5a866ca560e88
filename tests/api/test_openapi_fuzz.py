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


# Operations whose schema does not yet say everything the server checks (issue 23, item 7): a
# schema-valid request can still be refused there (bytes that are no image, an opaque cursor,
# a from/to range the schema cannot relate, image URLs while they are disabled). Every other
# operation runs every check, positive_data_acceptance included.
NOT_YET_EXACT = {
    "POST /v1.0/removebg",
    "POST /api/remove",
    "GET /api/remove",
    "POST /v1/designs",
    "GET /v1/designs",
    "GET /v1/stats/removal",
}
FUZZ = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _label(ctx: Any) -> str:
    return f"{ctx.operation.method.upper()} {ctx.operation.path}"


@schema.include(lambda ctx: _label(ctx) in NOT_YET_EXACT).parametrize()
@FUZZ
def test_api_conforms_to_its_schema(case: Any) -> None:
    # Every other default check applies. Not positive_data_acceptance: see NOT_YET_EXACT.
    case.call_and_validate(
        headers={"X-Api-Key": KEY},
        excluded_checks=[schemathesis.checks.positive_data_acceptance],
    )


@schema.exclude(lambda ctx: _label(ctx) in NOT_YET_EXACT).parametrize()
@FUZZ
def test_exact_operations_accept_every_schema_valid_request(case: Any) -> None:
    case.call_and_validate(headers={"X-Api-Key": KEY})


def test_the_not_yet_exact_list_names_real_operations() -> None:
    labels = {f"{op.method.upper()} {op.path}" for op in _operations()}
    assert labels >= NOT_YET_EXACT


def _operations() -> list[Any]:
    return [result.ok() for result in schema.get_all_operations()]
