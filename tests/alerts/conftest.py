"""Alert fixtures: a migrated database on SQLite and PostgreSQL, a webhook receiver."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stolentee.db import migrate
from stolentee.db.engine import Database
from tests.fakes.callback_receiver import Receiver

# The database fixtures of tests/db, run here over SQLite and PostgreSQL alike.
from ..db.conftest import DatabaseFactory, database_url, make_database

__all__ = ["DatabaseFactory", "database_url", "make_database"]


@pytest.fixture
def database(make_database: DatabaseFactory, database_url: str) -> Database:
    db = make_database(url=database_url)
    migrate.upgrade(db)
    return db


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()
