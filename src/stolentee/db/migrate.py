"""Schema migrations (Alembic) driven from stolentee: ``stolentee db upgrade`` and start-up."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from stolentee.db.engine import Database
from stolentee.errors import ConfigurationError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# PostgreSQL advisory lock key held by a migration's transaction (any constant of our own).
MIGRATION_LOCK_KEY = 0x5354_4D47
# Alembic keeps the running migration's context in module globals: one migration per process.
_in_process = threading.Lock()


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


@functools.cache
def head_revision() -> str | None:
    """The newest revision this version ships. Read once per process: the scripts are part of
    the installed version (a deploy starts new processes), and reading them takes milliseconds,
    which ``/readyz`` and the health checks would otherwise pay on every call."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(database: Database) -> str | None:
    with database.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@contextmanager
def _migration_transaction(database: Database) -> Iterator[Connection]:
    """One transaction for a whole migration run, holding the database's migration lock.

    Several processes may migrate at once: the HTTP workers of one ``stolentee serve``, or the
    API and its workers starting together against a fresh database. Without a lock each would
    create the same tables and all but one fail ("table alembic_version already exists"). The
    lock lasts until the transaction ends, so whoever comes next finds the schema at head and
    has nothing to do. PostgreSQL: a transaction-level advisory lock. SQLite: ``BEGIN
    IMMEDIATE`` takes the write lock at once (Python's sqlite3 would otherwise run the DDL
    outside any transaction, one statement at a time); others wait the driver's busy timeout.
    """
    with _in_process, database.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        elif conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        yield conn


def upgrade(database: Database, revision: str = "head") -> str | None:
    """Apply migrations up to ``revision`` in one transaction; returns the new revision."""
    config = alembic_config()
    with _migration_transaction(database) as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
    return current_revision(database)


def downgrade(database: Database, revision: str) -> str | None:
    config = alembic_config()
    with _migration_transaction(database) as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)
    return current_revision(database)


def schema_problem(database: Database) -> str | None:
    """Why the schema cannot serve this version (``None`` when it is at head)."""
    current = current_revision(database)
    head = head_revision()
    if current == head:
        return None
    return (
        f"database schema is at revision {current or 'empty'} but this version needs {head}; "
        "run `stolentee db upgrade`"
    )


def ensure_schema(database: Database, *, auto_migrate: bool) -> None:
    """Make the schema current for a command: migrate when allowed (the embedded SQLite
    default), else raise ``ConfigurationError`` saying to run ``stolentee db upgrade``."""
    problem = schema_problem(database)
    if problem is None:
        return
    if not auto_migrate:
        raise ConfigurationError(problem)
    upgrade(database)
