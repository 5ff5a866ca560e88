"""Schema migrations (Alembic) driven from stolentee: ``stolentee db upgrade`` and start-up."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from stolentee.db.engine import Database
from stolentee.errors import ConfigurationError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(database: Database) -> str | None:
    with database.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(database: Database, revision: str = "head") -> str | None:
    """Apply migrations up to ``revision`` in one transaction; returns the new revision."""
    config = alembic_config()
    with database.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
    return current_revision(database)


def downgrade(database: Database, revision: str) -> str | None:
    config = alembic_config()
    with database.engine.begin() as conn:
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
