"""What the queue reports about itself: depth, ready, in flight, the oldest queued job, totals and
processing percentiles (health and metrics), and what a reaper pass did."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from stolentee.db.engine import Database
from stolentee.db.models import Job
from stolentee.jobs.states import DONE, FAILED, PROCESSING, QUEUED

RECENT_DONE_FOR_PERCENTILES = 500


@dataclass(frozen=True, slots=True)
class QueueFigures:
    """A snapshot of the queue for health checks, metrics and autoscaling.

    ``depth``: queued jobs (``ready`` of them may run now, the rest wait for a retry backoff);
    ``in_flight``: jobs being processed; ``oldest_queued_age_s``: how long the longest-waiting
    ready job has been waiting (0 when none); ``processing_p50_s`` / ``processing_p95_s``: time
    from lease to completion over the most recent done jobs (``None`` before the first one).
    """

    depth: int
    ready: int
    in_flight: int
    oldest_queued_age_s: float
    done_total: int
    failed_total: int
    processing_p50_s: float | None
    processing_p95_s: float | None
    processing_sample: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "depth": self.depth,
            "ready": self.ready,
            "inFlight": self.in_flight,
            "oldestQueuedAgeS": round(self.oldest_queued_age_s, 3),
            "doneTotal": self.done_total,
            "failedTotal": self.failed_total,
            "processingP50S": _round(self.processing_p50_s),
            "processingP95S": _round(self.processing_p95_s),
            "processingSample": self.processing_sample,
        }


@dataclass(frozen=True, slots=True)
class ReapReport:
    """What one :meth:`JobQueue.reap` pass did."""

    requeued: int = 0  # expired leases put back in the queue
    failed: int = 0  # expired leases whose attempts were used up
    resent: int = 0  # queued jobs whose message was presumed lost and sent again

    def __bool__(self) -> bool:
        return bool(self.requeued or self.failed or self.resent)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty list."""
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def read_figures(database: Database, now: datetime) -> QueueFigures:
    """The queue's figures at ``now``, read from the ``jobs`` table."""
    with database.session() as session:
        counts: dict[str, int] = {
            state: count
            for state, count in session.execute(select(Job.state, func.count()).group_by(Job.state))
        }
        ready, oldest = session.execute(
            select(func.count(), func.min(Job.available_at)).where(
                Job.state == QUEUED, Job.available_at <= now
            )
        ).one()
        recent = session.execute(
            select(Job.started_at, Job.finished_at)
            .where(Job.state == DONE, Job.finished_at.is_not(None))
            .order_by(Job.finished_at.desc())
            .limit(RECENT_DONE_FOR_PERCENTILES)
        ).all()
    oldest_at = _aware(oldest)
    durations = sorted(
        (finished - started).total_seconds()
        for started, finished in recent
        if started is not None and finished is not None
    )
    return QueueFigures(
        depth=counts.get(QUEUED, 0),
        ready=int(ready or 0),
        in_flight=counts.get(PROCESSING, 0),
        oldest_queued_age_s=max(0.0, (now - oldest_at).total_seconds()) if oldest_at else 0.0,
        done_total=counts.get(DONE, 0),
        failed_total=counts.get(FAILED, 0),
        processing_p50_s=percentile(durations, 0.50) if durations else None,
        processing_p95_s=percentile(durations, 0.95) if durations else None,
        processing_sample=len(durations),
    )


def _aware(value: Any) -> datetime | None:
    """``min()`` over a UtcDateTime column skips the type's result processing on SQLite."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
