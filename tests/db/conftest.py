"""Database fixtures: every database test runs on SQLite and on the real PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from stolentee.config import Settings
from stolentee.db.engine import Database

from ..conftest import SettingsFactory


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    if request.param == "sqlite":
        return sqlite_url
    url: str = request.getfixturevalue("pg_schema_url")
    return url


DatabaseFactory = Callable[..., Database]


@pytest.fixture
def make_database(make_settings: SettingsFactory) -> Iterator[DatabaseFactory]:
    """Build a Database from settings overrides; disposed at the end of the test."""
    built: list[Database] = []

    def factory(*, service: dict[str, Any] | None = None, **database: Any) -> Database:
        settings: Settings = make_settings(service=service or {}, database=database)
        db = Database(settings=settings.database)
        built.append(db)
        return db

    yield factory
    for db in built:
        db.dispose()
