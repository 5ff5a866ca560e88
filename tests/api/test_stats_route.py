"""``GET /v1/stats/removal`` on the app as ``create_app`` builds it (SQLite in a temp dir)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from stolentee.api.app import create_app
from stolentee.removal.base import RemovalEvent
from stolentee.removal.stats.store import RemovalStatsStore

from ..conftest import SettingsFactory

KEY = "st_stats_route_key"
HEADERS = {"X-Api-Key": KEY}
URL = "/v1/stats/removal"


@pytest.fixture
def client(make_settings: SettingsFactory) -> Iterator[TestClient]:
    settings = make_settings(api={"api_keys": KEY})
    with TestClient(create_app(settings, run_worker=False)) as test_client:
        yield test_client


def stats_store(client: TestClient) -> RemovalStatsStore:
    store = client.app.state.services.runtime.removal_stats
    assert isinstance(store, RemovalStatsStore)
    return store


def attempt(provider: str, at: datetime, *, ok: bool = True, **fields: Any) -> RemovalEvent:
    values: dict[str, Any] = {
        "provider": provider,
        "ok": ok,
        "failure_kind": None if ok else "timeout",
        "latency_ms": 250.0,
        "megapixels": 2.0,
        "credits_charged": 0.0,
        "credits_avoided": 1.0 if ok else 0.0,
        "premium": False,
        "at": at,
    }
    return RemovalEvent(**{**values, **fields})


def error_code(response: Any) -> str:
    code: str = response.json()["errors"][0]["code"]
    return code


def today() -> date:
    return datetime.now(UTC).date()


def test_defaults_to_the_last_30_days_up_to_today(client: TestClient) -> None:
    store = stats_store(client)
    now = datetime.now(UTC)
    store.record(attempt("local", now))
    store.record(attempt("local", now - timedelta(days=40)))  # outside the default range
    before = today()
    response = client.get(URL, headers=HEADERS)
    after = today()
    assert response.status_code == 200, response.text
    body = response.json()
    end = date.fromisoformat(body["to"])
    assert end in (before, after)
    assert date.fromisoformat(body["from"]) == end - timedelta(days=29)
    assert body["totals"]["requests"] == 1
    assert [p["provider"] for p in body["providers"]] == ["local"]


def test_range_per_provider_per_day_and_totals(client: TestClient) -> None:
    store = stats_store(client)
    day_1 = datetime(2026, 3, 14, 23, 59, 59, tzinfo=UTC)
    day_2 = datetime(2026, 3, 15, 0, 0, 0, tzinfo=UTC)
    store.record(attempt("local", day_1))
    store.record(attempt("local", day_2, ok=False))
    store.record(attempt("removebg", day_2, credits_charged=1.0, premium=True))
    store.record(attempt("local", day_2 + timedelta(days=1)))  # after the range

    response = client.get(URL, params={"from": "2026-03-14", "to": "2026-03-15"}, headers=HEADERS)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {
        "from", "to", "usd_per_credit", "latency_histogram", "providers", "days", "totals",
        "models",
    }  # fmt: skip
    (no_model,) = body["models"]  # the two successes in range; the failure has no model
    assert (no_model["model"], no_model["removals"], no_model["premium_removals"]) == ("none", 2, 1)
    assert no_model["providers"] == ["local", "removebg"]
    assert (body["from"], body["to"], body["usd_per_credit"]) == ("2026-03-14", "2026-03-15", 0.2)
    local, removebg = body["providers"]
    assert local["provider"] == "local" and removebg["provider"] == "removebg"
    assert (local["requests"], local["successes"], local["failures"]) == (2, 1, 1)
    assert local["failures_by_kind"]["timeout"] == 1 and local["success_rate"] == 0.5
    assert local["credits_avoided"] == 1.0 and local["usd_avoided"] == 0.2
    assert set(local["latency_ms"]) == {"p50", "p95", "p99", "mean"}
    assert local["latency_ms"]["mean"] == 250.0
    assert 200 <= local["latency_ms"]["p50"] <= 320  # 250 ms's bucket
    assert removebg["credits_charged"] == 1.0 and removebg["premium_requests"] == 1
    assert [(d["day"], d["totals"]["requests"]) for d in body["days"]] == [
        ("2026-03-14", 1),
        ("2026-03-15", 2),
    ]
    assert body["totals"]["requests"] == 3 and body["totals"]["provider"] == "total"


@pytest.mark.parametrize(
    "params",
    [
        {"from": "2026-02-30", "to": "2026-03-14"},  # no such day
        {"from": "14/03/2026"},
        {"to": "20260314"},
        {"from": "yesterday"},
        {"from": ""},
    ],
)
def test_bad_ranges_are_400(client: TestClient, params: dict[str, str]) -> None:
    response = client.get(URL, params=params, headers=HEADERS)
    assert response.status_code == 400, response.text
    assert error_code(response) == "invalid_date_range"
    assert response.json()["errors"][0]["title"] == "Invalid date range"


def test_a_reversed_range_is_an_empty_period(client: TestClient) -> None:
    store = stats_store(client)
    store.record(attempt("local", datetime(2026, 3, 14, 12, tzinfo=UTC)))
    params = {"from": "2026-03-15", "to": "2026-03-14"}
    response = client.get(URL, params=params, headers=HEADERS)
    assert response.status_code == 200, response.text
    assert response.json()["totals"]["requests"] == 0 and response.json()["days"] == []
    wide = client.get(URL, params={"from": "0001-01-01", "to": "9999-12-31"}, headers=HEADERS)
    assert wide.status_code == 200 and wide.json()["totals"]["requests"] == 1


def test_the_longest_range_is_366_days(client: TestClient) -> None:
    params = {"from": "2025-03-14", "to": "2026-03-14"}
    response = client.get(URL, params=params, headers=HEADERS)
    assert response.status_code == 200, response.text


def test_missing_or_unknown_key_is_403(client: TestClient) -> None:
    missing = client.get(URL)
    assert missing.status_code == 403 and error_code(missing) == "auth_failed"
    unknown = client.get(URL, headers={"X-Api-Key": "st_nope"})
    assert unknown.status_code == 403 and error_code(unknown) == "auth_failed"


def test_documented_in_openapi(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"][URL]["get"]
    assert {p["name"] for p in operation["parameters"]} == {"from", "to"}
    assert {"200", "400", "403"} <= set(operation["responses"])
    assert operation["tags"] == ["stats"]
