"""Live savings from the removal statistics: recorded in a real database (SQLite), by real
removals through the provider chain, and changing when the statistics change."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal

import httpx
import pytest
from PIL import Image

from stolentee.config import EngineSettings, RemovalSettings
from stolentee.costs.live import (
    counterfactual_profile,
    live_profile,
    live_savings,
    storage_provider_for,
)
from stolentee.costs.model import CORRECTED, compute
from stolentee.costs.pricebook import Pricebook
from stolentee.costs.profile import Service
from stolentee.db import migrate
from stolentee.removal.base import FailureKind, RemovalEvent, RemovalOptions
from stolentee.removal.engine import RemovalEngine
from stolentee.removal.providers.chain import ProviderChain
from stolentee.removal.providers.removebg import RemoveBgRemover
from stolentee.removal.stats.report import StatsReport
from stolentee.removal.stats.store import RemovalStatsStore
from tests.removal.conftest import composite, draw_logo, encode

# The database fixtures of tests/db (SQLite here: the counts are the stats store's business).
from ..db.conftest import DatabaseFactory, make_database

__all__ = ["DatabaseFactory", "make_database"]

DAY = date(2026, 3, 14)
NOON = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)
D = Decimal


@pytest.fixture
def store(make_database: DatabaseFactory, sqlite_url: str) -> RemovalStatsStore:
    database = make_database(url=sqlite_url)
    migrate.upgrade(database)
    return RemovalStatsStore(database=database, now=lambda: NOON)


def attempt(
    provider: str,
    *,
    ok: bool = True,
    kind: FailureKind | None = None,
    charged: float = 0.0,
    avoided: float = 0.0,
) -> RemovalEvent:
    return RemovalEvent(
        provider=provider,
        ok=ok,
        failure_kind=kind,
        latency_ms=120.0,
        megapixels=0.7,
        credits_charged=charged,
        credits_avoided=avoided,
        premium=False,
        at=NOON,
    )


def day_report(store: RemovalStatsStore, day: date = DAY) -> StatsReport:
    return store.report(start=day, end=day)


def test_live_savings_come_from_the_recorded_statistics(
    store: RemovalStatsStore, book: Pricebook
) -> None:
    for _ in range(30):
        store.record(attempt("local", avoided=1.0))
    for _ in range(10):
        store.record(attempt("removebg", charged=1.0))
    store.record(attempt("rembg-service", ok=False, kind="timeout"))
    stats = day_report(store)
    result = live_savings(
        book, stats, storage_bytes=5 * 10**9, storage_objects=1200, storage_provider="cloudflare-r2"
    )
    assert result.period_days == 1
    assert result.removal.self_hosted_images == 30 and result.removal.paid_images == 10
    assert result.removal.credits_charged == 10 and result.removal.credits_avoided == 30
    # A month is 30 days: Remove.bg 10 x 30 = 300 credits x $0.20 = $60; 5 GB fit R2's free tier.
    assert result.actual_monthly_usd == D("60.00")
    # Everything through Remove.bg: (10 + 30) x 30 = 1,200 credits = $240; Supabase Pro $25.
    assert result.counterfactual_monthly_usd == D("265.00")
    assert result.estimated_monthly_savings_usd == D("205.00")
    assert result.self_hosted_share == D("0.75")
    assert result.cost_optimized
    assert result.breakdown() == {"removal": D("180.00"), "storage": D("25.00"), "compute": 0}
    data = result.as_dict()
    json.dumps(data)  # serialisable as is
    assert data["estimated_monthly_savings_usd"] == 205.0
    assert data["estimated_monthly_savings"] == "$205.00"
    assert data["cost_optimized"] is True
    assert data["images"]["by_provider"] == {"local": 30, "rembg-service": 0, "removebg": 10}
    assert any("compute is not counted" in note for note in data["notes"])

    # More self-hosted work: the savings grow with it (no constant anywhere).
    for _ in range(10):
        store.record(attempt("rembg-service", avoided=1.0))
    store.record(attempt("local", avoided=0.25))  # a preview: a quarter credit
    more = live_savings(book, day_report(store), storage_bytes=5 * 10**9)
    assert more.removal.credits_avoided == D("40.25")
    assert more.counterfactual_monthly_usd == D("25") + D("50.25") * 30 * D("0.20")
    assert more.estimated_monthly_savings_usd == D("266.50")
    assert more.estimated_monthly_savings_usd > result.estimated_monthly_savings_usd


def test_live_savings_scale_with_the_period_and_count_self_hosted_compute(
    store: RemovalStatsStore, book: Pricebook
) -> None:
    for _ in range(100):
        store.record(attempt("local", avoided=1.0))
    stats = day_report(store)
    worker = Service(key="rembg", name="Worker - rembg", ram_gb=D(2), vcpu=D("0.25"))
    monthly = live_savings(book, stats, period_days=30, self_hosted_services=[worker])
    # 100 images in 30 days = 100 a month: $20 at Remove.bg + Supabase Pro $25 against the
    # $25 rembg worker (the plan's fee is paid by the backend either way).
    assert monthly.counterfactual_monthly_usd == D("45.00")
    assert monthly.actual_monthly_usd == D("25.00")
    assert monthly.estimated_monthly_savings_usd == D("20.00")
    assert monthly.breakdown()["compute"] == D("-25.00")
    daily = live_savings(book, stats, period_days=1, self_hosted_services=[worker])
    assert daily.estimated_monthly_savings_usd == D("25") + D(3000) * D("0.20") - D(25)


def test_without_self_hosted_work_nothing_is_optimised(
    store: RemovalStatsStore, book: Pricebook
) -> None:
    empty = live_savings(book, day_report(store), storage_bytes=0)
    assert empty.self_hosted_share is None and not empty.cost_optimized
    assert empty.removal.paid_images == 0
    store.record(attempt("removebg", charged=1.0))
    paid_only = live_savings(book, day_report(store))
    assert paid_only.self_hosted_share == 0 and not paid_only.cost_optimized


def test_the_measured_profile_and_its_counterfactual(
    store: RemovalStatsStore, book: Pricebook
) -> None:
    for _ in range(4):
        store.record(attempt("local", avoided=1.0))
    store.record(attempt("removebg", charged=0.25))
    profile = live_profile(day_report(store), period_days=2, storage_bytes=3 * 10**9)
    assert profile.removal is not None
    assert profile.removal.self_hosted.full == 60 and profile.removal.self_hosted.credits == 60
    assert profile.removal.removebg.credits == D("3.75")
    assert profile.storage is not None and profile.storage.stored_gb == 3
    other = counterfactual_profile(profile, book)
    assert other.removal is not None and other.removal.removebg.credits == D("63.75")
    assert other.storage is not None and other.storage.provider == "supabase"
    assert compute(book, other, CORRECTED).line("removebg").amount == D("12.75")  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="storage_provider must be one of"):
        live_profile(day_report(store), storage_provider="floppy")
    with pytest.raises(ValueError, match="period_days must be >= 1"):
        live_profile(day_report(store), period_days=0)


# --- real removals through the provider chain --------------------------------------------------

RESULT_SIZE = (1000, 700)  # 0.7 MP: a full-size result, 1 credit


def _png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", size, (0, 0, 0, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def chain(store: RemovalStatsStore) -> Iterator[ProviderChain]:
    """The in-process engine first, then Remove.bg (a stand-in on an httpx mock transport that
    answers as Remove.bg does, charging one credit per image)."""
    body = _png(RESULT_SIZE)

    def removebg_api(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1.0/removebg"
        headers = {
            "Content-Type": "image/png",
            "X-Width": str(RESULT_SIZE[0]),
            "X-Height": str(RESULT_SIZE[1]),
            "X-Credits-Charged": "1",
        }
        return httpx.Response(200, content=body, headers=headers)

    settings = RemovalSettings(
        removebg_api_key="test-key",
        removebg_api_url="https://api.remove.bg/v1.0",
        premium_uses_removebg=True,
    )
    engine = RemovalEngine(settings=EngineSettings())
    client = httpx.Client(transport=httpx.MockTransport(removebg_api))
    paid = RemoveBgRemover(settings=settings, http_client=client)
    try:
        yield ProviderChain(
            providers=[engine, paid], settings=settings, stats=store, wall_clock=lambda: NOON
        )
    finally:
        client.close()
        engine.close()


def test_live_savings_from_real_removals(
    chain: ProviderChain, store: RemovalStatsStore, book: Pricebook
) -> None:
    logo = encode(composite(draw_logo(RESULT_SIZE), (255, 255, 255)))
    for _ in range(2):
        result = chain.remove(logo, RemovalOptions())
        assert result.provider == "local" and (result.width, result.height) == RESULT_SIZE
    premium = chain.remove(logo, RemovalOptions(premium=True))
    assert premium.provider == "removebg" and premium.credits_charged == 1
    today = store.today()
    stats = store.report(start=today, end=today)
    local = stats.provider("local")
    assert local is not None and local.successes == 2 and local.credits_avoided == 2
    before = live_savings(book, stats)
    # One day scaled to 30: Remove.bg charged 30 credits ($6); it would have charged 90 ($18);
    # storage: nothing stored, R2 free against Supabase Pro's $25.
    assert before.actual_monthly_usd == D("6.00")
    assert before.counterfactual_monthly_usd == D("43.00")
    assert before.estimated_monthly_savings_usd == D("37.00")
    assert before.cost_optimized

    chain.remove(logo, RemovalOptions())  # one more self-hosted removal
    after = live_savings(book, store.report(start=today, end=today))
    assert after.removal.self_hosted_images == 3
    assert after.estimated_monthly_savings_usd == D("43.00")  # + 30 credits x $0.20


def test_storage_provider_for_the_configured_backend() -> None:
    assert storage_provider_for("r2") == "cloudflare-r2"
    assert storage_provider_for("s3", "https://abc.supabase.co/storage/v1/s3") == "supabase"
    assert storage_provider_for("s3", "http://127.0.0.1:8333") == "self-managed"
    assert storage_provider_for("local") == "self-managed"
