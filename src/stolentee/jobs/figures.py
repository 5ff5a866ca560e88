"""What the queue reports about itself: depth, ready, in flight, the oldest queued job, totals and
processing percentiles (health and metrics), and what a reaper pass did."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

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
