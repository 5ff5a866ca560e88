"""Job fixtures: migrated databases (SQLite and PostgreSQL), transports, a fake UTC clock.

Redis tests use the ``redis_url`` fixture of tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from stolentee.config import QueueSettings, Settings
from stolentee.db import migrate
from stolentee.db.engine import Database
from stolentee.jobs.queue import JobQueue
from stolentee.jobs.transport import Transport, build_transport, memory_transport
from tests.fakes.clocks import FakeWallClock

from ..conftest import SettingsFactory

# The database fixtures of tests/db, run here over SQLite and PostgreSQL alike.
from ..db.conftest import DatabaseFactory, database_url, make_database

__all__ = ["DatabaseFactory", "database_url", "make_database"]


@pytest.fixture
def wall() -> FakeWallClock:
    return FakeWallClock()


@pytest.fixture
def database(make_database: DatabaseFactory, database_url: str) -> Database:
    db = make_database(url=database_url)
    migrate.upgrade(db)
    return db


@pytest.fixture
def transport() -> Iterator[Transport]:
    built = memory_transport(poll_s=0.05)
    yield built
    built.close()


QUEUE_TEST_SETTINGS: dict[str, Any] = {
    "lease_s": 30.0,
    "heartbeat_s": 5.0,
    "max_attempts": 3,
    "retry_backoff_s": 10.0,
    "reaper_interval_s": 15.0,
}

QueueFactory = Callable[..., JobQueue]


@pytest.fixture
def make_queue(database: Database, transport: Transport, wall: FakeWallClock) -> QueueFactory:
    """``make_queue(lease_s=..., resend_after_s=...)``: a JobQueue on the test database."""

    def factory(*, resend_after_s: float | None = None, **settings: Any) -> JobQueue:
        queue_settings = QueueSettings(**{**QUEUE_TEST_SETTINGS, **settings})
        return JobQueue(
            database=database,
            transport=transport,
            settings=queue_settings,
            clock=wall,
            resend_after_s=resend_after_s,
        )

    return factory


@pytest.fixture
def queue(make_queue: QueueFactory) -> JobQueue:
    return make_queue()


TransportFactory = Callable[..., Transport]


@pytest.fixture
def make_transport(make_settings: SettingsFactory) -> Iterator[TransportFactory]:
    """``make_transport(redis_url="")``: the transport the settings choose; closed afterwards."""
    built: list[Transport] = []

    def factory(redis_url: str = "", poll_s: float = 0.05) -> Transport:
        settings: Settings = make_settings(queue={"redis_url": redis_url})
        made = build_transport(settings, poll_s=poll_s)
        built.append(made)
        return made

    yield factory
    for made in built:
        made.close()


# The queue's and the worker's contracts hold on every transport: the in-process memory queue,
# the embedded SQLite huey, and Redis (skipped with its reason when STOLENTEE_TEST_REDIS_URL is
# unset).
TRANSPORTS = ("memory", "sqlite", "redis")


@pytest.fixture(params=TRANSPORTS)
def worker_transport(
    request: pytest.FixtureRequest, make_transport: TransportFactory
) -> Iterator[Transport]:
    if request.param == "memory":
        built = memory_transport(poll_s=0.05)
        yield built
        built.close()
    elif request.param == "sqlite":
        yield make_transport()
    else:
        redis_url: str = request.getfixturevalue("redis_url")
        yield make_transport(redis_url=redis_url)
