"""Database fixtures: every database test runs on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from stolentee.config import Settings
from stolentee.db.engine import Database

from ..conftest import SettingsFactory


@pytest.fixture
def pg_schema_url(postgres_url: str) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in postgres_url else "?"
    try:
        yield f"{postgres_url}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


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
