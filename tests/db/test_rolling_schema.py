"""Schema changes that can roll: after every migration, the previous release keeps working.

During a deploy, ``stolentee db upgrade`` runs first and the previous version goes on serving
against the new schema until its last process stops. So every migration must only *expand*
(new tables, new nullable or defaulted columns, new indexes), and contract (drop, rename,
tighten) only in a later release, once no running version needs the old shape.

For each revision, on SQLite and PostgreSQL: the database is migrated to the revision before it
and its tables are reflected, which is exactly what the previous release knows; then the
migration is applied and the previous release's statements are run against the new schema with
those old table definitions: insert a row naming only the old columns, read it back by its key,
update it, delete it. A migration that drops or renames a column, or adds a NOT NULL column
without a server default, fails here (the insert or the select of the old shape breaks).
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    and_,
    delete,
    insert,
    select,
    update,
)

from stolentee.db import migrate

from .conftest import DatabaseFactory

# Values a CHECK constraint allows, for the columns that have one.
CONSTRAINED = {("jobs", "state"): "queued"}


def revision_pairs() -> list[tuple[str, str]]:
    """(previous, revision) for every migration after the first, oldest first."""
    script = ScriptDirectory.from_config(migrate.alembic_config())
    chain = [rev.revision for rev in reversed(list(script.walk_revisions()))]
    return list(itertools.pairwise(chain))


def value_for(table: Table, column: Column[Any], n: int) -> Any:
    """A value of the column's type, unique per ``n`` where that matters."""
    if (table.name, column.name) in CONSTRAINED:
        return CONSTRAINED[(table.name, column.name)]
    kind = column.type
    if isinstance(kind, Boolean):
        return False
    if isinstance(kind, Integer | BigInteger):
        return n
    if isinstance(kind, Float | Numeric):
        return float(n)
    if isinstance(kind, DateTime):
        return datetime(2026, 1, 1, 12, 0, n % 60, tzinfo=UTC)
    if isinstance(kind, Date):
        return date(2026, 1, 1 + n % 28)
    if isinstance(kind, JSON):
        return {"n": n}
    if isinstance(kind, String | Text):
        length = getattr(kind, "length", None) or 64
        return f"{n}-{uuid.uuid4().hex}"[:length]
    raise AssertionError(f"no test value for {table.name}.{column.name} ({kind!r})")


def old_row(table: Table, n: int) -> dict[str, Any]:
    """What the previous release writes: a value for every column it knows, except a single
    integer key the database generates."""
    single_key = len(table.primary_key.columns) == 1
    row = {}
    for column in table.columns:
        generated = column.primary_key and single_key and isinstance(column.type, Integer)
        if generated and column.autoincrement:
            continue
        row[column.name] = value_for(table, column, n)
    return row


@pytest.mark.parametrize(("previous", "revision"), revision_pairs())
def test_the_previous_release_keeps_working_after_the_migration(
    make_database: DatabaseFactory, database_url: str, previous: str, revision: str
) -> None:
    database = make_database(url=database_url)
    migrate.upgrade(database, previous)
    known = MetaData()
    known.reflect(database.engine)
    known_tables = [t for t in known.sorted_tables if t.name != "alembic_version"]
    with database.engine.begin() as conn:  # rows the previous release wrote before the deploy
        for table in known_tables:
            conn.execute(insert(table).values(old_row(table, 1)))

    assert migrate.upgrade(database, revision) == revision

    now = MetaData()
    now.reflect(database.engine)
    for table in known_tables:
        assert table.name in now.tables, f"{revision} dropped or renamed {table.name}"
        missing = {c.name for c in table.columns} - {c.name for c in now.tables[table.name].columns}
        assert not missing, f"{revision} dropped or renamed {table.name}.{sorted(missing)}"

    with database.engine.begin() as conn:
        for table in known_tables:
            row = old_row(table, 2)
            inserted = conn.execute(insert(table).values(row))
            keys = table.primary_key.columns
            if all(key.name in row for key in keys):
                key_values = {key.name: row[key.name] for key in keys}
            else:  # an autoincrement key
                key_values = dict(
                    zip([k.name for k in keys], inserted.inserted_primary_key, strict=True)
                )
            where = and_(*(table.c[name] == value for name, value in key_values.items()))
            read = conn.execute(select(table).where(where)).mappings().one()
            assert {name: read[name] for name in key_values} == key_values
            for column in table.columns:
                if not column.primary_key and (table.name, column.name) not in CONSTRAINED:
                    conn.execute(update(table).where(where).values({column.name: row[column.name]}))
                    break
            assert conn.execute(delete(table).where(where)).rowcount == 1
        for table in known_tables:  # the old rows are readable in their old shape
            assert conn.execute(select(table)).first() is not None
