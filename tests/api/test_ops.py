"""The ops dashboard: ``GET /v1/ops/summary`` (access control, every section, figures that
match the statistics) and ``GET /ops`` in a real Chromium (charts drawn, numbers equal to the
JSON, screenshots that show the bars)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from stolentee.api.app import create_app
from stolentee.config import ServiceSettings, Settings
from stolentee.db import migrate
from stolentee.db.engine import Database
from stolentee.removal.base import RemovalEvent
from stolentee.removal.stats.store import RemovalStatsStore
from tests.fakes.browser import chromium_page, require_chromium
from tests.fakes.processes import StolenteeProcess

from ..conftest import SettingsFactory

if TYPE_CHECKING:
    from playwright.sync_api import Page

KEY = "st_ops_dashboard_key"
SECTIONS = {"health", "queue", "providers", "removals", "savings", "latency", "costs"}
USD_PER_CREDIT = 0.2  # the Remove.bg price the statistics use by default


def seed(database: Database, *, days: int, per_day: int, now: datetime) -> dict[str, int]:
    """Removal statistics for the last ``days`` days: day n has ``per_day + n`` self-hosted
    successes, ``n % 3`` Remove.bg successes and one failure every other day. Returns the
    totals by kind."""
    store = RemovalStatsStore(database=database, now=lambda: now)
    totals = {"local": 0, "removebg": 0, "failures": 0}
    for n in range(days):
        at = now - timedelta(days=days - 1 - n)

        def event(provider: str, ok: bool, *, at: datetime = at) -> RemovalEvent:
            return RemovalEvent(
                provider=provider,
                ok=ok,
                failure_kind=None if ok else "timeout",
                latency_ms=400.0,
                megapixels=1.0,
                credits_charged=1.0 if ok and provider == "removebg" else 0.0,
                credits_avoided=1.0 if ok and provider == "local" else 0.0,
                premium=provider == "removebg",
                at=at,
                image_kind="photo" if ok else None,
            )

        for _ in range(per_day + n):
            store.record(event("local", True))
        for _ in range(n % 3):
            store.record(event("removebg", True))
        if n % 2:
            store.record(event("local", False))
        totals["local"] += per_day + n
        totals["removebg"] += n % 3
        totals["failures"] += n % 2
    store.close()
    return totals


@pytest.fixture
def client(make_settings: SettingsFactory) -> Iterator[TestClient]:
    settings = make_settings(api={"api_keys": KEY})
    with TestClient(create_app(settings, run_worker=False)) as test_client:
        yield test_client


def test_the_summary_needs_a_key_whenever_keys_are_configured(client: TestClient) -> None:
    missing = client.get("/v1/ops/summary")
    assert missing.status_code == 401
    assert missing.json()["errors"][0]["code"] == "auth_required"
    wrong = client.get("/v1/ops/summary", headers={"X-Api-Key": "st_wrong"})
    assert wrong.status_code == 403
    assert wrong.json()["errors"][0]["code"] == "auth_failed"
    allowed = client.get("/v1/ops/summary", headers={"X-Api-Key": KEY})
    assert allowed.status_code == 200
    assert set(allowed.json()) >= SECTIONS


def test_without_keys_only_loopback_gets_the_summary(make_settings: SettingsFactory) -> None:
    with TestClient(create_app(make_settings(), run_worker=False)) as outsider:  # "testclient"
        assert outsider.get("/v1/ops/summary").status_code == 403
    loopback = TestClient(create_app(make_settings(), run_worker=False), client=("127.0.0.1", 1))
    with loopback:
        assert loopback.get("/v1/ops/summary").status_code == 200


def test_the_summary_figures_match_the_statistics(client: TestClient) -> None:
    runtime = client.app.state.services.runtime  # type: ignore[attr-defined]
    totals = seed(runtime.database, days=30, per_day=5, now=datetime.now(UTC))
    for _ in range(3):
        assert client.get("/health", headers={"X-Api-Key": KEY}).status_code == 200
    body = client.get("/v1/ops/summary", headers={"X-Api-Key": KEY}).json()

    removals = body["removals"]
    assert len(removals["days"]) == 30
    assert removals["total"] == totals["local"] + totals["removebg"]
    assert sum(day["selfHosted"] for day in removals["days"]) == totals["local"]
    assert sum(day["removebg"] for day in removals["days"]) == totals["removebg"]
    assert sum(day["failures"] for day in removals["days"]) == totals["failures"]
    assert removals["days"][-1]["selfHosted"] == 5 + 29

    savings = body["savings"]
    assert savings["creditsAvoided"] == totals["local"]
    assert savings["savedUsd"] == pytest.approx(totals["local"] * USD_PER_CREDIT)
    assert sum(day["savedUsd"] for day in savings["days"]) == pytest.approx(savings["savedUsd"])
    assert savings["estimatedMonthlySavingsUsd"] > 0

    providers = {p["name"]: p for p in body["providers"]["providers"]}
    assert providers["local"]["requests"] == totals["local"] + totals["failures"]
    assert providers["local"]["failures"] == totals["failures"]
    assert providers["local"]["model"] == "u2netp"
    assert "lastProbe" in providers["local"] and "consecutiveFailures" in providers["local"]

    routes = {(r["method"], r["route"]): r for r in body["latency"]["routes"]}
    assert routes[("GET", "/health")]["requests"] == 3
    assert routes[("GET", "/health")]["p95Ms"] is not None

    costs = body["costs"]
    assert costs["users"] == [100, 500, 1000, 5000]
    for scenario in costs["scenarios"]:
        monthly = [point["monthlyUsd"] for point in scenario["points"]]
        assert monthly == sorted(monthly) and monthly[0] > 0  # more users cost more

    names = {c["name"] for c in body["health"]["components"]}
    assert {"database", "storage", "queue", "removal:local"} <= names
    assert body["queue"]["depth"] == 0


def test_the_page_is_served_with_its_assets_and_no_figures(client: TestClient) -> None:
    page = client.get("/ops")
    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert "/web/ops.js" in page.text and "<script>" not in page.text
    assert "usd" not in page.text.lower()  # the figures come from the API, with a key
    for asset, kind in (("/web/ops.js", "text/javascript"), ("/web/ops.css", "text/css")):
        response = client.get(asset)
        assert response.status_code == 200 and response.headers["content-type"].startswith(kind)


# --- in a real browser ------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[StolenteeProcess]:
    """``stolentee serve`` with an API key and 30 days of statistics."""
    require_chromium()
    data = tmp_path / "data"
    database = Database(settings=Settings(service=ServiceSettings(data_dir=data)).database)
    migrate.upgrade(database)
    seed(database, days=30, per_day=20, now=datetime.now(UTC))
    database.dispose()
    process = StolenteeProcess(
        ["serve", "--no-worker"],
        {"STOLENTEE_DATA_DIR": str(data), "STOLENTEE_API_KEYS": KEY},
        tmp_path / "serve.log",
    )
    process.start()
    yield process
    process.stop()


def coloured_pixels(png: bytes, rgb: tuple[int, int, int]) -> int:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    pixels = image.tobytes()
    return sum(
        1
        for i in range(0, len(pixels), 3)
        if abs(pixels[i] - rgb[0]) + abs(pixels[i + 1] - rgb[1]) + abs(pixels[i + 2] - rgb[2]) < 40
    )


def test_the_dashboard_draws_every_chart_from_the_summary(
    server: StolenteeProcess, tmp_path: Path
) -> None:
    for _ in range(5):  # some traffic for the latency chart
        httpx.get(f"{server.url}/v1/designs", headers={"X-Api-Key": KEY}, timeout=10)
    with chromium_page(server.url, viewport={"width": 1280, "height": 2400}) as page:
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.set_default_timeout(20_000)
        page.goto("/ops")
        page.wait_for_selector("body[data-state='error']")  # no key yet: 401, shown
        assert "Not allowed" in page.get_by_test_id("error").inner_text()

        page.get_by_test_id("api-key").fill(KEY)
        page.get_by_test_id("load").click()
        page.wait_for_selector("body[data-state='ready']")
        assert page.get_by_test_id("error").is_hidden()
        summary: dict[str, Any] = httpx.get(
            f"{server.url}/v1/ops/summary", headers={"X-Api-Key": KEY}, timeout=10
        ).json()
        check_numbers(page, summary)
        check_charts(page, summary, tmp_path)
        assert problems == []


def check_numbers(page: Page, summary: dict[str, Any]) -> None:
    components = page.locator("[data-testid='components'] li")
    assert components.count() == len(summary["health"]["components"])
    assert page.get_by_test_id("health-status").inner_text() == summary["health"]["status"]
    assert page.get_by_test_id("queue-depth").locator("dd").inner_text() == str(
        summary["queue"]["depth"]
    )
    total = summary["removals"]["total"]
    assert page.get_by_test_id("removals-total").inner_text() == f"{total:,} in 30 days"
    saved = summary["savings"]["savedUsd"]
    assert page.get_by_test_id("savings-saved").locator("dd").inner_text() == f"${saved:,.2f}"
    local = next(p for p in summary["providers"]["providers"] if p["name"] == "local")
    assert page.get_by_test_id("provider-requests-local").inner_text() == f"{local['requests']:,}"
    for scenario in summary["costs"]["scenarios"]:
        for point in scenario["points"]:
            cell = page.locator(
                f"[data-scenario='{scenario['name']}'] td[data-users='{point['users']}']"
            )
            assert cell.inner_text().startswith(f"${point['monthlyUsd']:,.2f}")


def check_charts(page: Page, summary: dict[str, Any], tmp_path: Path) -> None:
    # Removals: one self-hosted and one Remove.bg bar per day, each with the JSON's value.
    bars = page.locator("[data-testid='chart-removals'] rect.bar")
    assert bars.count() == 60
    values = [
        (bar.get_attribute("data-series"), float(bar.get_attribute("data-value") or "nan"))
        for bar in bars.all()
    ]
    days = summary["removals"]["days"]
    assert [v for s, v in values if s == "self-hosted"] == [d["selfHosted"] for d in days]
    assert [v for s, v in values if s == "Remove.bg"] == [d["removebg"] for d in days]
    latency = page.locator("[data-testid='chart-latency'] rect.bar")
    assert latency.count() == min(14, len(summary["latency"]["routes"])) > 0
    saved = page.locator("[data-testid='chart-savings'] rect.bar")
    assert [float(b.get_attribute("data-value") or "nan") for b in saved.all()] == [
        d["savedUsd"] for d in summary["savings"]["days"]
    ]
    costs = page.locator("[data-testid='chart-costs'] rect.bar")
    assert costs.count() == 4 * len(summary["costs"]["scenarios"]) ** 2

    # The screenshots show the bars: the charts' colours are there, the page is not blank.
    accent, saved_green = (0x1F, 0x5F, 0xBF), (0x1E, 0x7D, 0x32)
    for test_id, colour in (
        ("chart-removals", accent),
        ("chart-latency", accent),
        ("chart-savings", saved_green),
        ("chart-costs", accent),
        ("chart-provider-days", accent),
    ):
        shot = page.get_by_test_id(test_id).screenshot()
        (tmp_path / f"{test_id}.png").write_bytes(shot)
        assert coloured_pixels(shot, colour) > 200, f"{test_id}: no bars in the screenshot"
    page.screenshot(path=str(tmp_path / "ops.png"), full_page=True)
