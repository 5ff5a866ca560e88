"""``stolentee db upgrade | current``: the database schema's migrations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from stolentee.cli.common import console, load_settings

if TYPE_CHECKING:
    from stolentee.db.engine import Database

db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)


def _database() -> Database:
    from stolentee.db.engine import Database

    return Database(settings=load_settings().database, watchdog=False)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply pending migrations (up to REVISION, default head)."""
    from stolentee.db import migrate

    database = _database()
    try:
        before = migrate.current_revision(database)
        after = migrate.upgrade(database, revision)
    finally:
        database.dispose()
    if before == after:
        console.print(f"Database already at revision {after}.")
    else:
        console.print(f"Database upgraded from {before or 'empty'} to {after}.")


@db_app.command("current")
def db_current() -> None:
    """Print the database's revision and the newest one this version ships."""
    from stolentee.db import migrate

    database = _database()
    try:
        current = migrate.current_revision(database)
    finally:
        database.dispose()
    head = migrate.head_revision()
    state = "up to date" if current == head else "migrations pending: run `stolentee db upgrade`"
    console.print(f"current: {current or 'empty'}  head: {head}  ({state})")
