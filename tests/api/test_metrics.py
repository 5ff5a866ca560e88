"""``GET /metrics``: present, in the Prometheus text format, and moving with real work."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from stolentee.api.app import create_app
from tests.fakes.processes import StolenteeProcess

from ..conftest import SettingsFactory
from ..removal.conftest import composite, draw_logo, encode
from .test_designs import HEADERS, KEY, upload, wait_for

LOGO = encode(composite(draw_logo((300, 200)), (255, 255, 255)))


@pytest.fixture
def client(make_settings: SettingsFactory) -> Iterator[TestClient]:
    settings = make_settings(api={"api_keys": KEY}, queue={"reaper_interval_s": 1.0})
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def scrape(
    client: TestClient, **headers: str
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_move_with_requests_removals_and_jobs(client: TestClient) -> None:
    before = scrape(client)
    assert value(before, "process_resident_memory_bytes") > 0
    assert value(before, "stolentee_db_pool_max") == 5
    assert ("stolentee_queue_depth", ()) in before

    removed = client.post("/v1.0/removebg", files={"image_file": ("l.png", LOGO)}, headers=HEADERS)
    assert removed.status_code == 200
    design = upload(client).json()
    assert wait_for(client, design["id"])["status"] == "done"
    after = scrape(client)

    route = {"method": "POST", "route": "/v1.0/removebg"}
    assert (
        value(after, "stolentee_http_requests_total", **route, status="200")
        == value(before, "stolentee_http_requests_total", **route, status="200") + 1
    )
    assert value(after, "stolentee_http_request_duration_seconds_count", **route) >= 1
    removals = {
        dict(labels)["type"]: count
        for (name, labels), count in after.items()
        if name == "stolentee_removals_total" and dict(labels)["provider"] == "local"
    }
    assert sum(removals.values()) == 2, removals  # the request and the design
    assert set(removals) <= {"graphic", "photo"}
    assert value(after, "stolentee_removal_megapixels_total", provider="local") > 0
    assert value(after, "stolentee_job_duration_seconds_count", kind="design", outcome="ok") == 1
    assert value(after, "stolentee_db_query_duration_seconds_count") > value(
        before, "stolentee_db_query_duration_seconds_count"
    )
    # Route templates, not raw paths: the design id is not a label value.
    assert not any(design["id"] in dict(labels).get("route", "") for _, labels in after)


def test_metrics_token(make_settings: SettingsFactory) -> None:
    settings = make_settings(service={"metrics_token": "s3cret-metrics-token"})
    with TestClient(create_app(settings)) as client:
        assert client.get("/metrics").status_code == 403
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
        assert scrape(client, Authorization="Bearer s3cret-metrics-token")


def test_s3_storage_calls_are_counted(
    make_settings: SettingsFactory,
    s3_storage_settings: Callable[..., dict[str, Any]],
    s3_buckets: Callable[[], str],
) -> None:
    storage = {"backend": "s3", **s3_storage_settings(s3_buckets())}
    settings = make_settings(api={"api_keys": KEY}, storage=storage)
    with TestClient(create_app(settings)) as client:
        design = upload(client).json()
        assert wait_for(client, design["id"])["status"] == "done"
        assert client.get("/uploads/missing.png").status_code == 404
        samples = scrape(client)
    assert (
        value(samples, "stolentee_storage_operations_total", operation="PutObject", outcome="ok")
        >= 2
    )
    missing = {"operation": "HeadObject", "outcome": "client_error"}
    assert value(samples, "stolentee_storage_operations_total", **missing) >= 1


def test_several_http_workers_are_summed_in_every_scrape(tmp_path: Path) -> None:
    server = StolenteeProcess(
        ["serve"],
        {
            "STOLENTEE_DATA_DIR": str(tmp_path / "data"),
            "STOLENTEE_HTTP_WORKERS": "2",
            "STOLENTEE_RUN_WORKER": "false",
        },
        tmp_path / "serve.log",
    )
    server.start()
    try:
        for _ in range(40):  # a new connection each: the kernel spreads them over the workers
            assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
        seen: set[float] = set()
        for _ in range(6):
            text = httpx.get(f"{server.url}/metrics", timeout=10).text
            samples = {
                (sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
            }
            route = {"method": "GET", "route": "/health", "status": "200"}
            seen.add(value(samples, "stolentee_http_requests_total", **route))
        assert seen == {40.0}, "every scrape must count the requests of both workers"
        metrics_dirs = list((tmp_path / "data" / "metrics").iterdir())
        assert len(metrics_dirs) == 1 and any(metrics_dirs[0].iterdir())
    finally:
        server.stop()
    assert list((tmp_path / "data" / "metrics").iterdir()) == []  # removed on shutdown


def test_the_removal_service_reports_its_pool_and_no_queue(make_settings: SettingsFactory) -> None:
    """The removal service builds no queue: its scrape has the database pool, no queue gauges."""
    with TestClient(create_app(make_settings(), role="removal")) as client:
        text = client.get("/metrics").text
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {"stolentee_db_pool_max", "stolentee_db_pool_in_use"} <= names
    assert "stolentee_queue_depth" not in names


def test_each_removal_providers_breaker_is_a_gauge(client: TestClient) -> None:
    chain = client.app.state.services.runtime.providers  # type: ignore[attr-defined]
    (first, *_) = chain.provider_names
    closed = scrape(client)
    assert ("stolentee_removal_breaker_open", (("provider", first),)) in closed
    assert value(closed, "stolentee_removal_breaker_open", provider=first) == 0
    assert value(closed, "stolentee_removal_breaker_forced", provider=first) == 0

    for _ in range(20):  # more than any failure threshold
        chain.breaker(first).record_failure("down")
    opened = scrape(client)
    assert value(opened, "stolentee_removal_breaker_open", provider=first) == 1
    assert value(opened, "stolentee_removal_breaker_forced", provider=first) == 0

    chain.breaker(first).force_open("out of credits")
    forced = scrape(client)
    assert value(forced, "stolentee_removal_breaker_forced", provider=first) == 1


def test_jobs_failed_for_good_are_a_gauge(client: TestClient) -> None:
    assert ("stolentee_jobs_failed", ()) in scrape(client)
