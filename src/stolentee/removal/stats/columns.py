"""The statistics table's columns by role: the key, the counters, the sums."""

from __future__ import annotations

from stolentee.db.models import (
    REMOVAL_FAILURE_KINDS,
    REMOVAL_LATENCY_BUCKETS,
    failure_column,
    latency_bucket_column,
)

FAILURE_COLUMNS = tuple(failure_column(kind) for kind in REMOVAL_FAILURE_KINDS)


BUCKET_COLUMNS = tuple(latency_bucket_column(i) for i in range(REMOVAL_LATENCY_BUCKETS))


SUM_COLUMNS = ("latency_ms_sum", "megapixels", "credits_charged", "credits_avoided")


COUNTER_COLUMNS = ("requests", "successes", *FAILURE_COLUMNS, *BUCKET_COLUMNS, *SUM_COLUMNS)


KEY_COLUMNS = ("day", "provider", "premium")


MODEL_KEY_COLUMNS = ("day", "provider", "model", "premium")


MODEL_COUNTER_COLUMNS = ("removals", "latency_ms_sum", "megapixels", "credits_avoided")
