"""The states of a job, and the small rules every part of the queue shares: ids, UTC time, retry
backoff."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from stolentee.config import QueueSettings

QUEUED = "queued"


PROCESSING = "processing"


DONE = "done"


FAILED = "failed"


MAX_ERROR_CHARS = 4000


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    return uuid.uuid4().hex


def backoff_s(settings: QueueSettings, attempts: int, *, first_s: float | None = None) -> float:
    """Delay before the next try after ``attempts`` tries: ``first * 2**(attempts-1)``, where
    ``first`` is ``first_s`` or else ``settings.retry_backoff_s``."""
    first = settings.retry_backoff_s if first_s is None else first_s
    return float(first * 2 ** max(0, attempts - 1))


def truncate_error(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"
