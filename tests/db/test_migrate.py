"""Migrations apply on both databases and report their revision."""

from __future__ import annotations

from sqlalchemy import inspect

from stolentee.db import migrate

from .conftest import DatabaseFactory


def test_upgrade_reaches_head_and_is_idempotent(
    make_database: DatabaseFactory, database_url: str
) -> None:
    db = make_database(url=database_url)
    assert migrate.current_revision(db) is None
    head = migrate.head_revision()
    assert head is not None
    assert migrate.upgrade(db) == head
    assert migrate.upgrade(db) == head
    assert "alembic_version" in inspect(db.engine).get_table_names()


def test_downgrade_to_base_empties_version(
    make_database: DatabaseFactory, database_url: str
) -> None:
    db = make_database(url=database_url)
    migrate.upgrade(db)
    assert migrate.downgrade(db, "base") is None


def test_every_revision_chain_has_one_head() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config())
    assert len(script.get_heads()) == 1
    revisions = list(script.walk_revisions())
    assert revisions[-1].down_revision is None
