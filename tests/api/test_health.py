"""Health endpoints: the seed's shapes, measured figures, and readiness on a dead database."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from stolentee.api.app import create_app
from stolentee.db import migrate
from stolentee.db.engine import Database

from ..conftest import SettingsFactory


def test_health_is_ok_with_timestamp(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["timestamp"].endswith("Z")
    datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))


def test_health_does_not_touch_the_database(make_settings: SettingsFactory) -> None:
    settings = make_settings(database={"url": "postgresql://nobody@127.0.0.1:1/none"})
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/livez").status_code == 200


def test_detailed_health_shape_and_measured_values(client: TestClient) -> None:
    response = client.get("/health/detailed")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] in ("healthy", "degraded")
    assert body["uptime"] >= 0
    assert 0 < body["memory"]["used"] < body["memory"]["total"]
    assert len(body["cpu"]["loadAverage"]) == 3
    database = body["database"]
    assert database["status"] == "healthy"
    assert database["backend"] == "sqlite"
    assert isinstance(database["latency"], float) and database["latency"] >= 0
    pool = database["pool"]
    assert pool["max"] == 5
    assert pool["total"] == pool["idle"] + pool["inUse"]
    assert pool["waiting"] == 0
    assert pool["checkouts"] >= 1  # the latency probe itself checked one out
    infrastructure = body["infrastructure"]
    assert infrastructure["r2Storage"] is False  # local storage is configured
    assert infrastructure["rembgSelfHosted"] is True
    removal = body["removal"]
    assert removal["provider"] == "local" and removal["model"] == "u2netp"
    assert removal["modelInstalled"] is True and removal["slots"] == 2
    # From the cost model on the recorded statistics: nothing removed yet, so only the storage
    # line differs from the counterfactual (Supabase Pro), and nothing is self-hosted yet.
    assert isinstance(infrastructure["estimatedMonthlySavings"], float)
    assert infrastructure["costOptimized"] is False


def test_detailed_health_counts_more_checkouts_each_time(client: TestClient) -> None:
    first = client.get("/health/detailed").json()["database"]["pool"]["checkouts"]
    second = client.get("/health/detailed").json()["database"]["pool"]["checkouts"]
    assert second > first


def test_readyz_passes_when_database_answers(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/health+json")
    body = response.json()
    assert body["status"] == "pass"
    check = body["checks"]["database:responseTime"][0]
    assert check["status"] == "pass" and check["observedUnit"] == "ms"


def test_readyz_fails_when_postgres_is_unreachable(make_settings: SettingsFactory) -> None:
    settings = make_settings(
        database={"url": "postgresql://nobody@127.0.0.1:1/none", "connect_timeout_s": 2}
    )
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.headers["content-type"].startswith("application/health+json")
        body = response.json()
        assert body["status"] == "fail"
        assert "cannot reach the database" in body["checks"]["database:responseTime"][0]["output"]

        detailed = client.get("/health/detailed")
        assert detailed.status_code == 503
        assert detailed.json()["status"] == "unhealthy"
        assert detailed.json()["database"]["status"] == "unhealthy"


def test_readyz_passes_on_real_postgres(make_settings: SettingsFactory, pg_schema_url: str) -> None:
    settings = make_settings(database={"url": pg_schema_url})
    database = Database(settings=settings.database)
    try:
        with TestClient(create_app(settings, database=database)) as client:
            # Migrations run only on SQLite at start-up: until `db upgrade`, not ready.
            response = client.get("/readyz")
            assert response.status_code == 503
            output = response.json()["checks"]["database:responseTime"][0]["output"]
            assert "run `stolentee db upgrade`" in output
            migrate.upgrade(database)
            assert client.get("/readyz").status_code == 200
            detailed = client.get("/health/detailed").json()
            assert detailed["database"]["backend"] == "postgresql"
            assert detailed["status"] in ("healthy", "degraded")
    finally:
        database.dispose()


def test_unknown_route_is_json_404(client: TestClient) -> None:
    response = client.get("/no/such/route")
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "not_found"


def test_wrong_method_is_json_405(client: TestClient) -> None:
    response = client.post("/health")
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET"
    assert response.json()["errors"][0]["code"] == "method_not_allowed"


def test_s3_storage_is_checked_by_readiness_and_reported(
    make_settings: SettingsFactory,
    s3_storage_settings: Callable[..., dict[str, Any]],
    s3_buckets: Callable[[], str],
) -> None:
    overrides = {"backend": "s3", **s3_storage_settings(s3_buckets())}
    with TestClient(create_app(make_settings(storage=overrides))) as client:
        ready = client.get("/readyz").json()
        assert ready["status"] == "pass"
        assert ready["checks"]["storage:responseTime"][0]["status"] == "pass"
        detailed = client.get("/health/detailed").json()
        assert detailed["storage"]["backend"] == "s3"
        assert detailed["storage"]["status"] == "healthy"
        assert detailed["infrastructure"]["r2Storage"] is True

    overrides["s3_secret_access_key"] = "wrong-secret"
    with TestClient(create_app(make_settings(storage=overrides))) as client:
        response = client.get("/readyz")
        assert response.status_code == 503
        body = response.json()
        assert body["output"] == "storage not ready"
        assert body["checks"]["database:responseTime"][0]["status"] == "pass"
        assert "refused the credentials" in body["checks"]["storage:responseTime"][0]["output"]
        detailed = client.get("/health/detailed")
        assert detailed.status_code == 503
        assert detailed.json()["storage"]["status"] == "unhealthy"
        assert detailed.json()["infrastructure"]["r2Storage"] is False


def test_readyz_fails_when_local_storage_is_not_writable(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = make_settings(storage={"local_dir": tmp_path / "ro"})
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200
        shutil.rmtree(tmp_path / "ro" / "tmp")
        body = client.get("/readyz").json()
        assert body["status"] == "fail"
        assert "not writable" in body["checks"]["storage:responseTime"][0]["output"]


def test_the_removal_service_role_serves_only_removal_and_health(
    make_settings: SettingsFactory,
) -> None:
    with TestClient(create_app(make_settings(), role="removal")) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/readyz").status_code == 200
        paths = set(client.get("/openapi.json").json()["paths"])
        assert {"/v1.0/removebg", "/api/remove", "/health/detailed"} <= paths
        assert not any(
            path.startswith(("/v1/designs", "/uploads", "/v1/uploads")) for path in paths
        )
        assert client.get("/").status_code == 404
        # It builds only what it serves: no storage, no queue, no worker.
        assert set(client.get("/readyz").json()["checks"]) == {"database:responseTime"}
        detailed = client.get("/health/detailed").json()
        assert detailed["storage"]["status"] == "not used"
        assert detailed["queue"] == {"backend": None, "inProcessWorker": False}
        runtime = client.app.state.services.runtime  # type: ignore[attr-defined]
        assert runtime.worker is None
        assert not runtime.has_storage
        assert not runtime.has_queue


def test_live_savings_follow_the_removals_that_really_ran(make_settings: SettingsFactory) -> None:
    from tests.removal.conftest import composite, draw_logo, encode

    logo = encode(composite(draw_logo((300, 200)), (255, 255, 255)))
    settings = make_settings(api={"api_keys": "st_health_key"})
    with TestClient(create_app(settings), headers={"X-Api-Key": "st_health_key"}) as client:

        def savings() -> float:
            value = client.get("/health/detailed").json()["infrastructure"]
            assert isinstance(value["estimatedMonthlySavings"], float)
            return float(value["estimatedMonthlySavings"])

        before = savings()
        for expected_removals in (1, 2):
            answer = client.post("/v1.0/removebg", files={"image_file": ("l.png", logo)})
            assert answer.status_code == 200, answer.text
            assert answer.headers["X-Removal-Provider"] == "local"
            after = savings()
            assert after > before, f"savings did not grow after removal {expected_removals}"
            before = after
        assert client.get("/health/detailed").json()["infrastructure"]["costOptimized"] is True
        report = client.get("/v1/costs/report").json()
        assert report["live"]["estimated_monthly_savings"]
        live = report["live"]
        assert live["estimated_monthly_savings"] == f"${after:,.2f}"
        assert report["scenarios"]
        assert client.get("/v1/costs/report?policy=nonsense").status_code == 400
