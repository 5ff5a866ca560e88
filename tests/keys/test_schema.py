"""The hand-written 0002 migration creates the key tables exactly as the models declare them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select
from sqlalchemy.exc import StatementError

from stolentee.db import migrate
from stolentee.db.engine import Database
from stolentee.db.models import ApiKey, Base

from .conftest import DatabaseFactory

KEY_TABLES = {"api_keys", "api_usage"}


def _tables_named(diff: Any) -> set[str]:
    """Table names an autogenerate diff entry mentions (entries are tuples or lists of them)."""
    names: set[str] = set()
    items = diff if isinstance(diff, list) else [diff]
    for item in items:
        for part in item:
            name = getattr(part, "name", None) if not isinstance(part, str) else part
            table = getattr(part, "table", None)
            if table is not None:
                names.add(table.name)
            if isinstance(name, str):
                names.add(name)
    return names


def test_migration_matches_models(database: Database) -> None:
    with database.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(context, Base.metadata)
    ours = [d for d in diffs if _tables_named(d) & KEY_TABLES]
    assert ours == []
    assert set(inspect(database.engine).get_table_names()) >= KEY_TABLES


def test_downgrade_drops_the_key_tables(make_database: DatabaseFactory, database_url: str) -> None:
    db = make_database(url=database_url)
    migrate.upgrade(db)
    assert migrate.downgrade(db, "0001_baseline") == "0001_baseline"
    assert not KEY_TABLES & set(inspect(db.engine).get_table_names())
    assert migrate.upgrade(db, "0002_api_keys") == "0002_api_keys"


def test_timestamps_are_aware_utc_and_naive_ones_refused(database: Database) -> None:
    with database.session() as session:
        session.add(
            ApiKey(
                name="n", prefix="st_x", key_hash="0" * 64, created_at=datetime.now().astimezone()
            )
        )
    with database.session() as session:
        created = session.scalars(select(ApiKey.created_at)).one()
    assert created.utcoffset() == timedelta(0)

    with pytest.raises(StatementError, match="naive datetime"), database.session() as session:
        session.add(ApiKey(name="n", prefix="st_y", key_hash="1" * 64, created_at=datetime.now()))
