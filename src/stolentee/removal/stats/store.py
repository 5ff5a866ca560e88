"""Removal statistics per provider, kept in the database with daily roll-ups.

Every attempt the provider chain makes is one :class:`~stolentee.removal.base.RemovalEvent`;
:class:`RemovalStatsStore` (a :class:`~stolentee.removal.base.StatsSink`) adds it to the row of
its (UTC day, provider, caller tier) in ``removal_stats_daily`` with **one** ``INSERT ... ON
CONFLICT DO UPDATE SET n = n + excluded.n`` statement. The increment happens inside the database,
so writers in any number of threads and processes never lose a count, on SQLite and PostgreSQL
alike; the counts survive restarts.

Latency is kept as a histogram of fixed buckets, not as samples: bucket 0 holds attempts under
5 ms, bucket 45 those of 120 s and more, and the 44 buckets in between split 5 ms .. 120 s
log-evenly (each bound :data:`LATENCY_RATIO` ≈ 1.258 times the previous one, about ten buckets
per decade). A percentile is estimated as Prometheus' ``histogram_quantile`` does: find the
bucket that holds rank ``q * N`` and interpolate linearly between its bounds. The true
(nearest-rank) percentile lies in that same bucket, so the estimate is off by less than the
bucket's width: under 25.8 % of the value (under 5 ms below 5 ms). At or above 120 s the
estimate is 120 000 ms, the bucket's lower bound.

Money: ``usd_per_credit`` defaults to **$0.20**, the per-credit price the seed uses for Remove.bg
(its "saves $0.20 per image", at about 10 000 images a month). It is
unverified here: Remove.bg's pay-as-you-go price is higher, so pass your own rate to
:meth:`RemovalStatsStore.report`.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from stolentee.db.engine import Database
from stolentee.db.models import (
    REMOVAL_FAILURE_KINDS,
    REMOVAL_PROVIDER_LENGTH,
    removal_stats_daily,
)
from stolentee.errors import ClientError, ConfigurationError, StolenteeError
from stolentee.removal.base import RemovalEvent
from stolentee.removal.stats.buckets import (
    latency_bucket,
)
from stolentee.removal.stats.columns import (
    BUCKET_COLUMNS,
    COUNTER_COLUMNS,
    FAILURE_COLUMNS,
    KEY_COLUMNS,
)
from stolentee.removal.stats.report import (
    TOTAL,
    Counters,
    DayStats,
    ProviderStats,
    StatsReport,
    sum_counters,
)

log = logging.getLogger(__name__)

DEFAULT_USD_PER_CREDIT = 0.20  # the seed's Remove.bg price per image (1 credit); see above
DEFAULT_RANGE_DAYS = 30  # the report's default: the last 30 days, today (UTC) included


_DAY_FORMAT = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


class InvalidDateRangeError(ClientError):
    """A report's date is not a ``YYYY-MM-DD`` day."""

    code = "invalid_date_range"
    title = "Invalid date range"


# --- latency histogram -------------------------------------------------------------------------


# --- dates -------------------------------------------------------------------------------------


def parse_day(value: str, *, name: str) -> date:
    """A ``YYYY-MM-DD`` date (UTC day); anything else is :class:`InvalidDateRangeError`."""
    text = value.strip()
    try:
        if not _DAY_FORMAT.fullmatch(text):
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidDateRangeError(f"{name} must be a date as YYYY-MM-DD; got {value!r}") from None


# Any pair of days is a period: a ``from`` after ``to`` is an empty one (zero everywhere), and a
# long one costs no more than the rows it holds (the report lists only days with activity). So
# every pair of well-formed dates is a valid request, as the API schema says.


def resolve_range(start: date | None, end: date | None, *, today: date) -> tuple[date, date]:
    """Fill in the defaults: ``to`` today, ``from`` 30 days up to ``to`` (from 0001-01-01 on)."""
    end = today if end is None else end
    if start is None:
        earliest = date.min + timedelta(days=DEFAULT_RANGE_DAYS - 1)
        start = date.min if end < earliest else end - timedelta(days=DEFAULT_RANGE_DAYS - 1)
    return start, end


def _utc_now() -> datetime:
    return datetime.now(UTC)


# --- the report --------------------------------------------------------------------------------


# --- the store ---------------------------------------------------------------------------------


SERVICE_FLUSH_INTERVAL_S = 1.0  # how stale the service's and workers' statistics may be


class RemovalStatsStore:
    """The statistics table: :meth:`record` each attempt, :meth:`report` a period.

    Thread-safe and cheap to call from worker threads. It never fails a removal: a database
    error is logged and counted in :attr:`dropped` instead. Without ``flush_interval_s`` each
    :meth:`record` is one upsert. With it (the service and workers: removals should not wait for
    a database write), attempts are added up in memory per day, provider and tier and written
    by a background thread every ``flush_interval_s`` seconds, one upsert per key;
    :meth:`report` flushes first, and :meth:`close` writes what is left.
    """

    def __init__(
        self,
        *,
        database: Database,
        now: Callable[[], datetime] = _utc_now,
        flush_interval_s: float | None = None,
    ) -> None:
        if flush_interval_s is not None and flush_interval_s <= 0:
            raise ValueError("flush_interval_s must be > 0")
        self._database = database
        self._now = now
        self._upsert = _upsert_statement(database.engine.dialect.name)
        self._lock = threading.Lock()
        self._dropped = 0
        self._flush_interval_s = flush_interval_s
        self._pending: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None

    @property
    def dropped(self) -> int:
        """Events lost to database errors since this store was built."""
        with self._lock:
            return self._dropped

    def today(self) -> date:
        """Today's UTC date by this store's clock (the report's default end)."""
        return self._now().astimezone(UTC).date()

    def record(self, event: RemovalEvent) -> None:
        """Add one attempt to its day's counters, atomically (one upsert).

        Raises ``ValueError`` for an event that cannot be right (a bug in the caller): an empty
        or too long provider name, a failure without a kind or a success with one, a negative
        or non-finite figure, a naive ``at``.
        """
        values = _row_values(event)
        if self._flush_interval_s is None:
            self._write([values])
            return
        key = tuple(values[name] for name in KEY_COLUMNS)
        with self._lock:
            pending = self._pending.get(key)
            if pending is None:
                self._pending[key] = values
            else:
                for name in COUNTER_COLUMNS:
                    pending[name] += values[name]
            if self._flusher is None and not self._stop.is_set():
                self._flusher = threading.Thread(
                    target=self._flush_periodically, name="stolentee-stats-flush", daemon=True
                )
                self._flusher.start()

    def flush(self) -> None:
        """Write the attempts added up in memory (nothing to do without buffering)."""
        with self._lock:
            rows = list(self._pending.values())
            self._pending = {}
        if rows:
            self._write(rows)

    def close(self) -> None:
        """Stop the background writer and write what is left."""
        self._stop.set()
        flusher = self._flusher
        if flusher is not None:
            flusher.join(timeout=10)
        self.flush()

    def _flush_periodically(self) -> None:
        assert self._flush_interval_s is not None
        while not self._stop.wait(self._flush_interval_s):
            self.flush()

    def _write(self, rows: list[dict[str, Any]]) -> None:
        try:
            with self._database.engine.begin() as conn:
                conn.execute(self._upsert, rows)
        except (SQLAlchemyError, StolenteeError):
            lost = sum(int(row["requests"]) for row in rows)
            with self._lock:
                self._dropped += lost
            log.warning("removal statistics: could not record %d attempt(s)", lost, exc_info=True)

    def report(
        self, *, start: date, end: date, usd_per_credit: float = DEFAULT_USD_PER_CREDIT
    ) -> StatsReport:
        """Per provider, per day and in total over ``start`` .. ``end`` (UTC days, inclusive;
        empty when ``start > end``)."""
        self.flush()
        if not math.isfinite(usd_per_credit) or usd_per_credit < 0:
            raise ValueError(f"usd_per_credit must be a finite price >= 0; got {usd_per_credit}")
        table = removal_stats_daily
        stmt = (
            select(table)
            .where(table.c.day >= start, table.c.day <= end)
            .order_by(table.c.day, table.c.provider, table.c.premium)
        )
        with self._database.connect() as conn:
            rows = conn.execute(stmt).mappings().all()

        by_day: dict[date, dict[str, Counters]] = {}
        for row in rows:
            day_providers = by_day.setdefault(row["day"], {})
            name = str(row["provider"])
            day_providers[name] = day_providers.get(name, Counters()) + Counters.from_row(row)

        def stats(name: str, counters: Counters) -> ProviderStats:
            return ProviderStats.from_counters(name, counters, usd_per_credit=usd_per_credit)

        per_provider: dict[str, Counters] = {}
        days: list[DayStats] = []
        for day in sorted(by_day):
            providers = by_day[day]
            for name, counters in providers.items():
                per_provider[name] = per_provider.get(name, Counters()) + counters
            days.append(
                DayStats(
                    day=day,
                    providers=tuple(stats(name, providers[name]) for name in sorted(providers)),
                    totals=stats(TOTAL, sum_counters(providers.values())),
                )
            )
        return StatsReport(
            start=start,
            end=end,
            usd_per_credit=usd_per_credit,
            providers=tuple(stats(name, per_provider[name]) for name in sorted(per_provider)),
            days=tuple(days),
            totals=stats(TOTAL, sum_counters(per_provider.values())),
        )


def _row_values(event: RemovalEvent) -> dict[str, Any]:
    """The upsert's parameters for one event: its key, 1 in each counter it adds to, its sums."""
    provider = event.provider
    if not provider or len(provider) > REMOVAL_PROVIDER_LENGTH:
        raise ValueError(f"provider name must have 1 to {REMOVAL_PROVIDER_LENGTH} characters")
    if event.ok == (event.failure_kind is not None):
        raise ValueError("a failed attempt needs a failure kind, and a successful one none")
    if event.failure_kind is not None and event.failure_kind not in REMOVAL_FAILURE_KINDS:
        raise ValueError(f"unknown failure kind {event.failure_kind!r}")
    figures = {
        "latency_ms_sum": event.latency_ms,
        "megapixels": event.megapixels,
        "credits_charged": event.credits_charged,
        "credits_avoided": event.credits_avoided,
    }
    for name, value in figures.items():
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be finite and >= 0; got {value}")
    if event.at.tzinfo is None:
        raise ValueError("naive datetime: pass an aware datetime (UTC)")
    bucket = latency_bucket(event.latency_ms)
    values: dict[str, Any] = {
        "day": event.at.astimezone(UTC).date(),
        "provider": provider,
        "premium": event.premium,
        "requests": 1,
        "successes": 1 if event.ok else 0,
    }
    for kind, column in zip(REMOVAL_FAILURE_KINDS, FAILURE_COLUMNS, strict=True):
        values[column] = 1 if kind == event.failure_kind else 0
    for index, column in enumerate(BUCKET_COLUMNS):
        values[column] = 1 if index == bucket else 0
    values.update(figures)
    return values


def _upsert_statement(dialect: str) -> Insert:
    """``INSERT ... ON CONFLICT (day, provider, premium) DO UPDATE SET n = n + excluded.n``."""
    table = removal_stats_daily
    key = [table.c[name] for name in KEY_COLUMNS]
    if dialect == "postgresql":
        pg_stmt = postgresql.insert(table)
        return pg_stmt.on_conflict_do_update(
            index_elements=key,
            set_={name: table.c[name] + pg_stmt.excluded[name] for name in COUNTER_COLUMNS},
        )
    if dialect == "sqlite":
        lite_stmt = sqlite.insert(table)
        return lite_stmt.on_conflict_do_update(
            index_elements=key,
            set_={name: table.c[name] + lite_stmt.excluded[name] for name in COUNTER_COLUMNS},
        )
    raise ConfigurationError(f"removal statistics need SQLite or PostgreSQL, not {dialect}")
