"""The hand-written 0003 migration creates the jobs table exactly as the model declares it."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from stolentee.db import migrate
from stolentee.db.engine import Database
from stolentee.db.models import Base

from .conftest import DatabaseFactory


def _mentions_jobs(diff: Any) -> bool:
    items = diff if isinstance(diff, list) else [diff]
    for item in items:
        for part in item:
            table = getattr(part, "table", None)
            if getattr(table, "name", None) == "jobs" or getattr(part, "name", None) == "jobs":
                return True
            if part == "jobs":
                return True
    return False


def test_migration_matches_model(database: Database) -> None:
    with database.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(context, Base.metadata)
    assert [d for d in diffs if _mentions_jobs(d)] == []
    indexes = {ix["name"] for ix in inspect(database.engine).get_indexes("jobs")}
    assert indexes >= {
        "ix_jobs_state_available_at",
        "ix_jobs_state_lease_expires_at",
        "ix_jobs_state_finished_at",
    }


def test_downgrade_drops_the_jobs_table(make_database: DatabaseFactory, database_url: str) -> None:
    db = make_database(url=database_url)
    migrate.upgrade(db, "0003_jobs")
    assert "jobs" in inspect(db.engine).get_table_names()
    assert migrate.downgrade(db, "0002_api_keys") == "0002_api_keys"
    assert "jobs" not in inspect(db.engine).get_table_names()
    assert migrate.upgrade(db, "0003_jobs") == "0003_jobs"
