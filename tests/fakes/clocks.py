"""Clocks the tests move by hand."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta


@dataclass
class FakeWallClock:
    """A UTC wall clock the test moves by hand."""

    now: datetime = field(default_factory=lambda: datetime(2026, 3, 14, 12, 0, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
