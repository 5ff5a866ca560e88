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

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from stolentee.db.engine import Database
from stolentee.db.models import (
    removal_model_daily,
    removal_stats_daily,
)
from stolentee.errors import ClientError, StolenteeError
from stolentee.removal.base import RemovalEvent
from stolentee.removal.stats.columns import (
    COUNTER_COLUMNS,
    KEY_COLUMNS,
    MODEL_COUNTER_COLUMNS,
    MODEL_KEY_COLUMNS,
)
from stolentee.removal.stats.report import (
    TOTAL,
    Counters,
    DayStats,
    ModelStats,
    ProviderStats,
    StatsReport,
    sum_counters,
)
from stolentee.removal.stats.rows import add_pending, model_values, row_values, upsert_statement

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
        dialect = database.engine.dialect.name
        self._upsert = upsert_statement(dialect, removal_stats_daily, KEY_COLUMNS, COUNTER_COLUMNS)
        self._model_upsert = upsert_statement(
            dialect, removal_model_daily, MODEL_KEY_COLUMNS, MODEL_COUNTER_COLUMNS
        )
        self._lock = threading.Lock()
        self._dropped = 0
        self._flush_interval_s = flush_interval_s
        self._pending: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._pending_models: dict[tuple[Any, ...], dict[str, Any]] = {}
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
        values = row_values(event)
        per_model = model_values(event)
        if self._flush_interval_s is None:
            self._write([values], [per_model] if per_model else [])
            return
        with self._lock:
            add_pending(self._pending, values, KEY_COLUMNS, COUNTER_COLUMNS)
            if per_model is not None:
                add_pending(
                    self._pending_models, per_model, MODEL_KEY_COLUMNS, MODEL_COUNTER_COLUMNS
                )
            if self._flusher is None and not self._stop.is_set():
                self._flusher = threading.Thread(
                    target=self._flush_periodically, name="stolentee-stats-flush", daemon=True
                )
                self._flusher.start()

    def flush(self) -> None:
        """Write the attempts added up in memory (nothing to do without buffering)."""
        with self._lock:
            rows = list(self._pending.values())
            model_rows = list(self._pending_models.values())
            self._pending, self._pending_models = {}, {}
        if rows:
            self._write(rows, model_rows)

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

    def _write(self, rows: list[dict[str, Any]], model_rows: list[dict[str, Any]]) -> None:
        try:
            with self._database.engine.begin() as conn:
                conn.execute(self._upsert, rows)
                if model_rows:
                    conn.execute(self._model_upsert, model_rows)
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
            models=self._models(start, end, usd_per_credit),
        )

    def _models(self, start: date, end: date, usd_per_credit: float) -> tuple[ModelStats, ...]:
        """Successful removals per model over the period, the most used first."""
        table = removal_model_daily
        stmt = select(table).where(table.c.day >= start, table.c.day <= end)
        with self._database.connect() as conn:
            rows = conn.execute(stmt).mappings().all()
        merged: dict[str, dict[str, Any]] = {}
        for row in rows:
            entry = merged.setdefault(
                str(row["model"]),
                {"providers": set(), "removals": 0, "premium": 0, "latency": 0.0, "avoided": 0.0},
            )
            removals = int(row["removals"])
            entry["providers"].add(str(row["provider"]))
            entry["removals"] += removals
            entry["premium"] += removals if row["premium"] else 0
            entry["latency"] += float(row["latency_ms_sum"])
            entry["avoided"] += float(row["credits_avoided"])
        models = [
            ModelStats(
                model=name,
                providers=tuple(sorted(entry["providers"])),
                removals=entry["removals"],
                premium_removals=entry["premium"],
                mean_latency_ms=entry["latency"] / entry["removals"] if entry["removals"] else 0.0,
                credits_avoided=entry["avoided"],
                usd_saved=entry["avoided"] * usd_per_credit,
            )
            for name, entry in merged.items()
        ]
        return tuple(sorted(models, key=lambda item: (-item.removals, item.model)))
