"""Key-store fixtures: a migrated database on SQLite and PostgreSQL, fake clocks, store factory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from stolentee.db import migrate
from stolentee.db.engine import Database
from stolentee.keys.store import KeyStore
from tests.fakes.clocks import FakeWallClock

# The database fixtures of tests/db, run here over SQLite and PostgreSQL alike.
from ..db.conftest import DatabaseFactory, database_url, make_database

__all__ = ["DatabaseFactory", "database_url", "make_database"]


@dataclass
class FakeClock:
    """A monotonic clock the test moves by hand."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def database(make_database: DatabaseFactory, database_url: str) -> Database:
    db = make_database(url=database_url)
    migrate.upgrade(db)
    return db


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def wall() -> FakeWallClock:
    return FakeWallClock(
        now=datetime(2026, 3, 14, 23, 59, 0, tzinfo=UTC)
    )  # a minute before a UTC day ends


StoreFactory = Callable[..., KeyStore]


@pytest.fixture
def make_store(database: Database, clock: FakeClock, wall: FakeWallClock) -> StoreFactory:
    """``make_store(static_keys=(...,), cache_ttl_s=...)``: a KeyStore on the test database."""

    def factory(**overrides: Any) -> KeyStore:
        options: dict[str, Any] = {"database": database, "clock": clock, "now": wall}
        return KeyStore(**{**options, **overrides})

    return factory
