"""Removal statistics on SQLite and the real PostgreSQL: atomic counts, histogram percentiles,
UTC day roll-ups, the migration, and ``stolentee stats removal``."""

from __future__ import annotations

import itertools
import json
import math
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, get_args

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from typer.testing import CliRunner

from stolentee.cli.stats import stats_app
from stolentee.config import Settings
from stolentee.db import migrate
from stolentee.db.engine import Database
from stolentee.db.models import REMOVAL_FAILURE_KINDS, REMOVAL_LATENCY_BUCKETS, Base
from stolentee.removal.base import FailureKind, RemovalEvent, StatsSink
from stolentee.removal.stats.buckets import (
    LATENCY_BOUNDS_MS,
    LATENCY_CEILING_MS,
    LATENCY_FLOOR_MS,
    LATENCY_RATIO,
    bucket_bounds,
    latency_bucket,
    percentile,
)
from stolentee.removal.stats.store import (
    DEFAULT_USD_PER_CREDIT,
    InvalidDateRangeError,
    RemovalStatsStore,
    parse_day,
    resolve_range,
)

# The database fixtures of tests/db, run here over SQLite and PostgreSQL alike.
from ..db.conftest import DatabaseFactory, database_url, make_database

__all__ = ["DatabaseFactory", "database_url", "make_database"]

REPO_ROOT = Path(__file__).resolve().parents[2]
TABLE = "removal_stats_daily"
DAY = date(2026, 3, 14)
NOON = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)


@pytest.fixture
def database(make_database: DatabaseFactory, database_url: str) -> Database:
    db = make_database(url=database_url)
    migrate.upgrade(db)
    return db


@pytest.fixture(params=[None, 0.05], ids=["one-upsert-each", "buffered"])
def store(database: Database, request: pytest.FixtureRequest) -> Iterator[RemovalStatsStore]:
    """Each attempt written at once, and attempts added up and written in the background (as
    the service and workers run it): the same figures either way."""
    stats = RemovalStatsStore(database=database, flush_interval_s=request.param)
    yield stats
    stats.close()


def event(
    provider: str = "local",
    *,
    ok: bool = True,
    kind: FailureKind | None = None,
    latency_ms: float = 100.0,
    megapixels: float = 1.0,
    charged: float = 0.0,
    avoided: float = 0.0,
    premium: bool = False,
    at: datetime = NOON,
    model: str = "none",
) -> RemovalEvent:
    return RemovalEvent(
        model=model,
        provider=provider,
        ok=ok,
        failure_kind=kind,
        latency_ms=latency_ms,
        megapixels=megapixels,
        credits_charged=charged,
        credits_avoided=avoided,
        premium=premium,
        at=at,
    )


def failed(provider: str, kind: FailureKind, **fields: Any) -> RemovalEvent:
    return event(provider, ok=False, kind=kind, **fields)


# --- the histogram (pure) ----------------------------------------------------------------------


def test_failure_kinds_are_the_protocol_s() -> None:
    assert get_args(FailureKind) == REMOVAL_FAILURE_KINDS


def test_buckets_are_log_spaced_from_5_ms_to_120_s() -> None:
    assert len(LATENCY_BOUNDS_MS) == REMOVAL_LATENCY_BUCKETS - 1
    assert LATENCY_BOUNDS_MS[0] == LATENCY_FLOOR_MS == 5.0
    assert LATENCY_BOUNDS_MS[-1] == LATENCY_CEILING_MS == 120_000.0
    ratios = [b / a for a, b in itertools.pairwise(LATENCY_BOUNDS_MS)]
    assert all(math.isclose(r, LATENCY_RATIO, rel_tol=1e-9) for r in ratios)
    assert 1.25 < LATENCY_RATIO < 1.26  # about ten buckets per decade
    assert [latency_bucket(ms) for ms in (0, 4.999, 5, 6.3, 119_999.9, 120_000, 1e9)] == [
        0, 0, 1, 2, 44, 45, 45,
    ]  # fmt: skip
    for index in range(REMOVAL_LATENCY_BUCKETS):
        low, high = bucket_bounds(index)
        assert latency_bucket(low) == index
        if not math.isinf(high):
            assert latency_bucket(math.nextafter(high, 0)) == index


def test_percentiles_interpolate_inside_the_bucket() -> None:
    buckets = [0] * REMOVAL_LATENCY_BUCKETS
    assert percentile(buckets, 0.5) is None
    buckets[10] = 4
    low, high = bucket_bounds(10)
    assert percentile(buckets, 0.5) == pytest.approx(low + (high - low) * 0.5)
    assert percentile(buckets, 0.99) == pytest.approx(low + (high - low) * 0.99)
    buckets[0] = 4  # 4 under 5 ms, 4 in bucket 10: the median is the top of bucket 0
    assert percentile(buckets, 0.5) == pytest.approx(5.0)
    assert percentile(buckets, 0.25) == pytest.approx(2.5)
    buckets[45] = 92  # 92 of 100 at 120 s or more: reported as 120 s
    assert percentile(buckets, 0.95) == LATENCY_CEILING_MS
    with pytest.raises(ValueError, match="q must be"):
        percentile(buckets, 0)


# --- recording and the report ------------------------------------------------------------------


def test_the_store_is_a_stats_sink(store: RemovalStatsStore) -> None:
    sink: StatsSink = store
    sink.record(event())
    assert store.report(start=DAY, end=DAY).totals.requests == 1


def test_report_sums_per_provider_with_failures_by_kind_and_money(
    store: RemovalStatsStore,
) -> None:
    store.record(event("local", latency_ms=80, megapixels=2.0, avoided=1.0))
    store.record(event("local", latency_ms=120, megapixels=0.25, avoided=0.25, premium=True))
    for kind in REMOVAL_FAILURE_KINDS:
        store.record(failed("rembg-service", kind, latency_ms=3000, megapixels=1.5))
    store.record(failed("rembg-service", "timeout", latency_ms=60_000))
    store.record(event("removebg", latency_ms=900, megapixels=4.0, charged=1.0, premium=True))

    report = store.report(start=DAY, end=DAY, usd_per_credit=0.5)
    assert [p.provider for p in report.providers] == ["local", "rembg-service", "removebg"]

    local = report.provider("local")
    assert local is not None
    assert (local.requests, local.successes, local.failures, local.premium_requests) == (2, 2, 0, 1)
    assert local.success_rate == 1.0
    assert local.megapixels == 2.25 and local.credits_avoided == 1.25 and local.credits_charged == 0
    assert local.usd_avoided == pytest.approx(0.625) and local.usd_charged == 0
    assert local.latency_mean_ms == pytest.approx(100.0)

    service = report.provider("rembg-service")
    assert service is not None
    assert service.requests == 9 and service.successes == 0 and service.failures == 9
    assert service.failures_by_kind == {kind: 1 for kind in REMOVAL_FAILURE_KINDS} | {"timeout": 2}
    assert service.success_rate == 0.0

    removebg = report.provider("removebg")
    assert removebg is not None
    assert removebg.credits_charged == 1.0 and removebg.usd_charged == pytest.approx(0.5)

    totals = report.totals
    assert totals.provider == "total"
    assert (totals.requests, totals.successes, totals.failures) == (12, 3, 9)
    assert totals.premium_requests == 2
    assert totals.megapixels == pytest.approx(2.25 + 8 * 1.5 + 1.0 + 4.0)
    assert totals.credits_charged == 1.0 and totals.credits_avoided == 1.25
    assert sum(totals.failures_by_kind.values()) == totals.failures
    assert len(report.days) == 1 and report.days[0].totals == totals


def test_default_price_is_the_seed_s_figure(store: RemovalStatsStore) -> None:
    store.record(event(avoided=1.0))
    report = store.report(start=DAY, end=DAY)
    assert DEFAULT_USD_PER_CREDIT == 0.20 and report.usd_per_credit == 0.20
    assert report.totals.usd_avoided == pytest.approx(0.20)


def test_percentiles_from_known_latencies_are_within_bucket_resolution(
    store: RemovalStatsStore,
) -> None:
    rng = random.Random(20261205)
    latencies = [rng.lognormvariate(math.log(400), 1.2) for _ in range(600)]
    latencies += [2.0, 3.5, 150_000.0]  # under the floor and over the ceiling too
    for latency in latencies:
        store.record(event(latency_ms=latency))
    stats = store.report(start=DAY, end=DAY).totals
    ordered = sorted(latencies)
    estimates = {0.50: stats.latency_p50_ms, 0.95: stats.latency_p95_ms, 0.99: stats.latency_p99_ms}
    for q, estimate in estimates.items():
        true = ordered[math.ceil(q * len(ordered)) - 1]  # nearest rank
        low, high = bucket_bounds(latency_bucket(true))
        assert estimate is not None and low <= estimate <= high, (q, true, estimate)
        assert abs(estimate - true) <= (LATENCY_RATIO - 1) * true
    assert stats.latency_mean_ms == pytest.approx(sum(latencies) / len(latencies))


def test_days_roll_up_by_utc_date(store: RemovalStatsStore) -> None:
    last_instant = datetime(2026, 3, 14, 23, 59, 59, 999_999, tzinfo=UTC)
    store.record(event(at=last_instant))
    store.record(event(at=last_instant + timedelta(microseconds=1)))  # 15th, 00:00 UTC
    # 01:30 on the 15th in UTC+2 is 23:30 on the 14th in UTC.
    utc_plus_2 = timezone(timedelta(hours=2))
    store.record(event("removebg", at=datetime(2026, 3, 15, 1, 30, tzinfo=utc_plus_2)))
    store.record(event(at=datetime(2026, 3, 17, 8, 0, tzinfo=UTC)))

    report = store.report(start=date(2026, 3, 13), end=date(2026, 3, 17))
    assert [(d.day, d.totals.requests) for d in report.days] == [
        (date(2026, 3, 14), 2),
        (date(2026, 3, 15), 1),
        (date(2026, 3, 17), 1),
    ]  # days without attempts are left out
    assert [p.provider for p in report.days[0].providers] == ["local", "removebg"]
    assert report.totals.requests == 4 and report.provider("local") is not None

    only_15th = store.report(start=date(2026, 3, 15), end=date(2026, 3, 15))
    assert only_15th.totals.requests == 1 and [p.provider for p in only_15th.providers] == ["local"]
    assert store.report(start=date(2026, 3, 16), end=date(2026, 3, 16)).totals.requests == 0


def test_an_empty_period_reports_zeros(store: RemovalStatsStore) -> None:
    report = store.report(start=DAY, end=DAY)
    assert report.providers == () and report.days == ()
    assert report.totals.requests == 0 and report.totals.success_rate is None
    assert report.totals.latency_p50_ms is None and report.totals.latency_mean_ms is None
    body = report.as_dict()
    assert body["totals"]["latency_ms"] == {"p50": None, "p95": None, "p99": None, "mean": None}


def test_as_dict_is_json(store: RemovalStatsStore) -> None:
    store.record(event(latency_ms=250, avoided=1.0))
    store.record(failed("removebg", "out_of_credits", latency_ms=400))
    body = json.loads(json.dumps(store.report(start=DAY, end=DAY).as_dict()))
    assert body["from"] == body["to"] == "2026-03-14" and body["usd_per_credit"] == 0.2
    assert body["latency_histogram"]["buckets"] == REMOVAL_LATENCY_BUCKETS
    assert [p["provider"] for p in body["providers"]] == ["local", "removebg"]
    removebg = body["providers"][1]
    assert removebg["failures_by_kind"]["out_of_credits"] == 1 and removebg["success_rate"] == 0
    assert set(removebg) == {
        "provider", "requests", "successes", "failures", "failures_by_kind", "premium_requests",
        "success_rate", "latency_ms", "megapixels", "credits_charged", "credits_avoided",
        "usd_charged", "usd_avoided",
    }  # fmt: skip
    assert body["days"][0]["day"] == "2026-03-14" and body["days"][0]["totals"]["requests"] == 2
    assert body["totals"]["usd_avoided"] == 0.2


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (event(provider=""), "provider name"),
        (event(provider="x" * 65), "provider name"),
        (event(ok=False), "failure kind"),
        (event(ok=True, kind="timeout"), "failure kind"),
        (event(ok=False, kind="gremlins"), "unknown failure kind"),
        (event(latency_ms=-1), "latency_ms_sum"),
        (event(latency_ms=math.nan), "latency_ms_sum"),
        (event(megapixels=math.inf), "megapixels"),
        (event(charged=-0.25), "credits_charged"),
        (event(at=datetime(2026, 3, 14, 12)), "naive"),
    ],
)
def test_impossible_events_are_refused(
    store: RemovalStatsStore, bad: RemovalEvent, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        store.record(bad)
    assert store.report(start=DAY, end=DAY).totals.requests == 0


def test_a_database_error_drops_the_event_without_failing(
    make_database: DatabaseFactory, database_url: str
) -> None:
    unmigrated = RemovalStatsStore(database=make_database(url=database_url))
    unmigrated.record(event())  # no table: logged and counted, not raised
    assert unmigrated.dropped == 1


def test_buffered_attempts_are_written_in_the_background_and_on_close(
    database: Database,
) -> None:
    buffered = RemovalStatsStore(database=database, flush_interval_s=0.05)
    reader = RemovalStatsStore(database=database)  # another process's view: no flush of its own
    for _ in range(3):
        buffered.record(event(latency_ms=20.0))
    buffered.record(failed("removebg", "timeout"))
    deadline = time.monotonic() + 30
    while reader.report(start=DAY, end=DAY).totals.requests < 4:
        assert time.monotonic() < deadline, "the background writer never wrote"
        time.sleep(0.02)
    totals = reader.report(start=DAY, end=DAY)
    assert (totals.totals.requests, totals.totals.successes) == (4, 3)
    buffered.record(event())
    buffered.close()  # writes what is left without waiting for the interval
    assert reader.report(start=DAY, end=DAY).totals.requests == 5
    assert buffered.dropped == 0


def test_a_buffered_database_error_counts_every_attempt_dropped(
    make_database: DatabaseFactory, database_url: str
) -> None:
    unmigrated = RemovalStatsStore(database=make_database(url=database_url), flush_interval_s=60)
    for _ in range(3):
        unmigrated.record(event())
    unmigrated.close()
    assert unmigrated.dropped == 3


def test_any_pair_of_days_is_a_period(store: RemovalStatsStore) -> None:
    store.record(event())
    store.flush()
    reversed_range = store.report(start=DAY, end=DAY - timedelta(days=1))
    assert reversed_range.totals.requests == 0 and reversed_range.days == ()
    whole_calendar = store.report(start=date.min, end=date.max)
    assert whole_calendar.totals.requests == 1 and len(whole_calendar.days) == 1
    with pytest.raises(ValueError, match="usd_per_credit"):
        store.report(start=DAY, end=DAY, usd_per_credit=-1)


def test_range_defaults_and_day_parsing() -> None:
    assert resolve_range(None, None, today=DAY) == (date(2026, 2, 13), DAY)  # 30 days
    assert resolve_range(None, date(2026, 1, 30), today=DAY) == (
        date(2026, 1, 1),
        date(2026, 1, 30),
    )
    assert resolve_range(date(2026, 3, 1), None, today=DAY) == (date(2026, 3, 1), DAY)
    assert resolve_range(date(2026, 3, 15), None, today=DAY) == (date(2026, 3, 15), DAY)
    assert resolve_range(None, date(1, 1, 5), today=DAY) == (date.min, date(1, 1, 5))
    assert parse_day(" 2026-03-14 ", name="from") == DAY
    for bad in ("20260314", "2026-3-14", "2026-02-30", "yesterday", "", "2026-03-14T00:00"):
        with pytest.raises(InvalidDateRangeError, match="from must be a date"):
            parse_day(bad, name="from")


# --- concurrency: no lost counts ---------------------------------------------------------------

PROVIDERS = ("local", "rembg-service", "removebg")


def workload(seed: int, count: int) -> list[RemovalEvent]:
    """Deterministic mixed events on two days; every sum is exact in binary floating point."""
    rng = random.Random(seed)
    events = []
    for _ in range(count):
        provider = rng.choice(PROVIDERS)
        ok = rng.random() < 0.7
        events.append(
            event(
                provider,
                ok=ok,
                kind=None if ok else rng.choice(REMOVAL_FAILURE_KINDS),
                latency_ms=rng.choice((3.0, 50.0, 400.0, 7000.0)),
                megapixels=rng.choice((0.25, 0.5, 2.0)),
                charged=1.0 if ok and provider == "removebg" else 0.0,
                avoided=0.25 if ok and provider != "removebg" else 0.0,
                premium=rng.random() < 0.2,
                at=NOON + timedelta(hours=rng.choice((0, 24))),
            )
        )
    return events


def assert_report_matches(store: RemovalStatsStore, events: list[RemovalEvent]) -> None:
    report = store.report(start=DAY, end=DAY + timedelta(days=1))
    for provider in PROVIDERS:
        mine = [e for e in events if e.provider == provider]
        stats = report.provider(provider)
        assert stats is not None
        assert stats.requests == len(mine)
        assert stats.successes == sum(e.ok for e in mine)
        assert stats.premium_requests == sum(e.premium for e in mine)
        kinds = Counter(e.failure_kind for e in mine if not e.ok)
        assert stats.failures_by_kind == {k: kinds.get(k, 0) for k in REMOVAL_FAILURE_KINDS}
        assert stats.megapixels == sum(e.megapixels for e in mine)
        assert stats.credits_charged == sum(e.credits_charged for e in mine)
        assert stats.credits_avoided == sum(e.credits_avoided for e in mine)
        assert stats.latency_mean_ms == sum(e.latency_ms for e in mine) / len(mine)
    per_day = {d.day: d.totals.requests for d in report.days}
    assert per_day == dict(Counter(e.at.date() for e in events))
    assert report.totals.requests == len(events)


def test_concurrent_threads_lose_no_counts(store: RemovalStatsStore) -> None:
    threads, per_thread = 8, 250
    batches = [workload(seed, per_thread) for seed in range(threads)]
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def run(batch: list[RemovalEvent]) -> None:
        try:
            barrier.wait()
            for item in batch:
                store.record(item)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(batch,)) for batch in batches]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == [] and store.dropped == 0
    assert_report_matches(store, [item for batch in batches for item in batch])


CHILD = """
import sys
from stolentee.config import DatabaseSettings
from stolentee.db.engine import Database
from stolentee.removal.stats.store import RemovalStatsStore
from tests.removal.test_stats import workload

database = Database(settings=DatabaseSettings(url=sys.argv[1]), watchdog=False)
store = RemovalStatsStore(database=database)
sys.stdin.readline()  # start together
for item in workload(int(sys.argv[2]), int(sys.argv[3])):
    store.record(item)
database.dispose()
sys.exit(1 if store.dropped else 0)
"""


def test_concurrent_processes_lose_no_counts(store: RemovalStatsStore, database_url: str) -> None:
    per_process = 300
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, database_url, str(100 + n), str(per_process)],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
        )
        for n in range(2)
    ]
    for child in children:
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        child.stdin.close()
    mine = workload(7, per_process)
    for item in mine:  # this process writes at the same time
        store.record(item)
    assert [child.wait(timeout=120) for child in children] == [0, 0]
    everything = mine + [item for n in range(2) for item in workload(100 + n, per_process)]
    assert_report_matches(store, everything)


# --- the migration -----------------------------------------------------------------------------


def test_removals_per_model(store: RemovalStatsStore) -> None:
    """Which model served how many: premium removals served here by the quality model count as
    credits avoided (Remove.bg no longer charged for them); failures have no model."""
    store.record(event(model="isnet", premium=True, avoided=1.0, latency_ms=1500))
    store.record(event(model="isnet", premium=True, avoided=1.0, latency_ms=2500))
    store.record(event(model="isnet", avoided=0.25, latency_ms=1000))
    store.record(event(model="u2netp", avoided=1.0))
    store.record(event("removebg", charged=1.0, premium=True))
    store.record(failed("local", "internal"))
    report = store.report(start=NOON.date(), end=NOON.date())
    by_name = {item.model: item for item in report.models}
    assert [item.model for item in report.models] == ["isnet", "none", "u2netp"]
    isnet = by_name["isnet"]
    assert (isnet.removals, isnet.premium_removals) == (3, 2)
    assert isnet.mean_latency_ms == pytest.approx(5000 / 3)
    assert isnet.credits_avoided == pytest.approx(2.25)
    assert isnet.usd_saved == pytest.approx(2.25 * report.usd_per_credit)
    assert by_name["none"].providers == ("removebg",) and by_name["none"].credits_avoided == 0
    assert sum(item.removals for item in report.models) == report.totals.successes
    assert report.as_dict()["models"][0]["model"] == "isnet"
    # Another day is another period.
    assert store.report(start=date(2001, 1, 1), end=date(2001, 1, 2)).models == ()


def test_migration_matches_the_model(database: Database) -> None:
    with database.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(context, Base.metadata)
    assert [d for d in diffs if TABLE in repr(d)] == []
    inspector = inspect(database.engine)
    assert TABLE in inspector.get_table_names()
    columns = {column["name"]: column for column in inspector.get_columns(TABLE)}
    assert len(columns) == 3 + 2 + len(REMOVAL_FAILURE_KINDS) + 1 + REMOVAL_LATENCY_BUCKETS + 3
    assert not any(column["nullable"] for column in columns.values())
    pk = inspector.get_pk_constraint(TABLE)
    assert pk["name"] == "pk_removal_stats_daily"
    assert set(pk["constrained_columns"]) == {"day", "provider", "premium"}


def test_downgrade_drops_only_the_stats_table(
    make_database: DatabaseFactory, database_url: str
) -> None:
    db = make_database(url=database_url)
    migrate.upgrade(db)
    RemovalStatsStore(database=db).record(event())
    assert migrate.downgrade(db, "0005_design_urls") == "0005_design_urls"
    tables = set(inspect(db.engine).get_table_names())
    assert TABLE not in tables and {"designs", "jobs", "api_keys"} <= tables
    assert migrate.upgrade(db, "0006_removal_stats") == "0006_removal_stats"
    with db.connect() as conn:
        assert conn.execute(text(f"SELECT COUNT(*) FROM {TABLE}")).scalar_one() == 0


# --- stolentee stats removal -------------------------------------------------------------------

runner = CliRunner()
WIDE = {"COLUMNS": "200"}


@pytest.fixture
def data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    path = tmp_path / "data"
    monkeypatch.setenv("STOLENTEE_DATA_DIR", str(path))
    return path


def record_on_configured_database(*events: RemovalEvent) -> None:
    database = Database(settings=Settings().database, watchdog=False)
    try:
        migrate.upgrade(database)
        store = RemovalStatsStore(database=database)
        for item in events:
            store.record(item)
        assert store.dropped == 0
    finally:
        database.dispose()


def test_cli_prints_providers_and_totals(data_dir: Path) -> None:
    record_on_configured_database(
        event("local", latency_ms=200, megapixels=2.0, avoided=1.0, model="isnet"),
        event("local", latency_ms=300, megapixels=2.0, avoided=1.0, model="isnet"),
        failed("rembg-service", "timeout", latency_ms=60_000),
        event("removebg", latency_ms=800, megapixels=1.0, charged=1.0),
        event("local", at=NOON - timedelta(days=1)),  # outside the range asked for
    )
    args = ["removal", "--from", "2026-03-14", "--to", "2026-03-14"]
    result = runner.invoke(stats_app, args, env=WIDE)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    local = next(line for line in lines if line.strip().startswith("local")).split()
    assert local[:5] == ["local", "2", "2", "0", "100.0"] and local[-3:] == ["0", "2", "0.40"]
    service = next(line for line in lines if line.strip().startswith("rembg-service")).split()
    assert service[1:5] == ["1", "0", "1", "0.0"]
    total = next(line for line in lines if line.strip().startswith("total")).split()
    assert total[1:5] == ["4", "3", "1", "75.0"] and total[-3:] == ["1", "2", "0.40"]
    assert "Failures by kind" in result.stdout and "timeout" in result.stdout
    assert "2026-03-14 (UTC)" in result.stdout
    assert "Removals per model" in result.stdout
    isnet = next(line for line in lines if line.strip().startswith("isnet")).split()
    assert isnet == ["isnet", "local", "2", "0", "250", "2", "0.40"]


def test_cli_json_is_the_api_s_body(data_dir: Path) -> None:
    record_on_configured_database(event("local", avoided=1.0))
    args = ["removal", "--from", "2026-03-14", "--to", "2026-03-14", "--usd-per-credit", "1.5"]
    result = runner.invoke(stats_app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["from"] == "2026-03-14" and body["usd_per_credit"] == 1.5
    assert body["providers"][0]["provider"] == "local" and body["totals"]["usd_avoided"] == 1.5


def test_cli_defaults_to_the_last_30_days(data_dir: Path) -> None:
    result = runner.invoke(stats_app, ["removal", "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    start, end = date.fromisoformat(body["from"]), date.fromisoformat(body["to"])
    assert (end - start).days == 29 and end >= datetime.now(UTC).date() - timedelta(days=1)
    assert body["providers"] == [] and body["totals"]["requests"] == 0
    assert (data_dir / "stolentee.db").exists()  # SQLite default: migrated on first use


@pytest.mark.parametrize(
    "args",
    [
        ["--to", "14/03/2026"],
        ["--from", "2026-02-30"],
    ],
)
def test_cli_bad_dates_are_clean_errors(data_dir: Path, args: list[str]) -> None:
    result = runner.invoke(stats_app, ["removal", *args])
    assert result.exit_code == 1
    assert "invalid_date_range" in result.stderr and "Traceback" not in result.output
