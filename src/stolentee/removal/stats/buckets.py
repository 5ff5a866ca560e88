"""The latency histogram of the removal statistics: log-spaced buckets from 5 ms to 120 s, and
percentiles estimated from them."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence

from stolentee.db.models import (
    REMOVAL_LATENCY_BUCKETS,
)

LATENCY_FLOOR_MS = 5.0


LATENCY_CEILING_MS = 120_000.0


_LATENCY_STEPS = REMOVAL_LATENCY_BUCKETS - 2  # buckets between the floor and the ceiling


LATENCY_RATIO = (LATENCY_CEILING_MS / LATENCY_FLOOR_MS) ** (1 / _LATENCY_STEPS)


# Bucket i (1..44) holds [LATENCY_BOUNDS_MS[i - 1], LATENCY_BOUNDS_MS[i]); 0 and 45 the rest.
LATENCY_BOUNDS_MS: tuple[float, ...] = (
    *(LATENCY_FLOOR_MS * LATENCY_RATIO**step for step in range(_LATENCY_STEPS)),
    LATENCY_CEILING_MS,
)


PERCENTILES = (0.50, 0.95, 0.99)


def latency_bucket(latency_ms: float) -> int:
    """The histogram bucket (0 .. 45) a latency falls in."""
    return bisect_right(LATENCY_BOUNDS_MS, latency_ms)


def bucket_bounds(index: int) -> tuple[float, float]:
    """``[low, high)`` of a bucket in ms; the last bucket's ``high`` is infinity."""
    if not 0 <= index < REMOVAL_LATENCY_BUCKETS:
        raise IndexError(f"no latency bucket {index}")
    low = 0.0 if index == 0 else LATENCY_BOUNDS_MS[index - 1]
    high = LATENCY_BOUNDS_MS[index] if index < len(LATENCY_BOUNDS_MS) else math.inf
    return low, high


def percentile(buckets: Sequence[int], q: float) -> float | None:
    """Estimated ``q``-quantile (0 < q <= 1) in ms of a histogram; None when it is empty.

    Rank ``q * N`` is located among the cumulative counts and interpolated linearly inside its
    bucket; in the open-ended last bucket the estimate is its lower bound, 120 000 ms.
    """
    if not 0 < q <= 1:
        raise ValueError(f"q must be in (0, 1]; got {q}")
    total = sum(buckets)
    if total == 0:
        return None
    target = q * total
    below = 0
    for index, count in enumerate(buckets):
        if count and below + count >= target:
            low, high = bucket_bounds(index)
            if math.isinf(high):
                return low
            return low + (high - low) * (target - below) / count
        below += count
    raise AssertionError("unreachable: the target rank is at most the total")
