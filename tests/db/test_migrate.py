"""Migrations apply on both databases and report their revision."""

from __future__ import annotations

import gc
import multiprocessing
import sys
from typing import Any

import pytest
from sqlalchemy import inspect, text

from stolentee.config import DatabaseSettings
from stolentee.db import migrate
from stolentee.db.engine import Database

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


def _upgrade_when_all_ready(url: str, start: Any, results: Any) -> None:
    """In a child process: one more stolentee process starting against ``url``."""
    database = Database(settings=DatabaseSettings(url=url))
    try:
        start.wait(timeout=60)
        results.put(migrate.upgrade(database))
    except Exception as exc:  # reported to the test, which names it
        results.put(f"{type(exc).__name__}: {exc}")
    finally:
        database.dispose()


@pytest.mark.skipif(sys.platform != "linux", reason="forks the test process (Linux)")
def test_processes_starting_together_migrate_a_fresh_database_once(
    make_database: DatabaseFactory, database_url: str
) -> None:
    """Several HTTP workers (or workers and the API) start at once against an empty database
    and each runs the migrations: all succeed, and the schema is built once."""
    contenders = 4
    context = multiprocessing.get_context("fork")
    start = context.Barrier(contenders)
    results = context.Queue()
    children = [
        context.Process(target=_upgrade_when_all_ready, args=(database_url, start, results))
        for _ in range(contenders)
    ]
    # A forked child has only the forking thread: if it garbage-collected an onnxruntime
    # session left over from an earlier test in this worker, the session's thread pool would
    # wait for threads the child does not have. Collect here, where they exist, and freeze the
    # rest so the children never collect what they inherit.
    gc.collect()
    gc.freeze()
    try:
        for child in children:
            child.start()
    finally:
        gc.unfreeze()
    answers = [results.get(timeout=120) for _ in children]
    for child in children:
        child.join(timeout=30)
    assert answers == [migrate.head_revision()] * contenders
    db = make_database(url=database_url)
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
