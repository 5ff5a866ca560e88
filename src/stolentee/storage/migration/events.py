"""What a migration reports as it goes: one event per object, for progress bars and logs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

KEYS_NAMED_IN_ERRORS = 10  # how many offending keys an error message lists


ProgressStatus = Literal["copied", "skipped", "failed", "missing", "deleted"]


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """Sent after each object; ``bytes_done`` counts skipped objects too, so an ETA holds."""

    objects_done: int
    bytes_done: int
    total_objects: int | None
    total_bytes: int | None
    key: str
    status: ProgressStatus


ProgressCallback = Callable[[ProgressEvent], None]
