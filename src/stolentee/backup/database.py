"""The database of a backup: one consistent snapshot, taken while the service runs, and restored.

SQLite goes through its online backup API (pages copied under a read transaction: a
consistent file even while the service writes). PostgreSQL goes through ``pg_dump
--format=custom`` with an exported snapshot: the keys of the designs' objects are read in the
same snapshot the dump sees, so the backup copies exactly the objects its rows name. Never by
copying database files.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import URL

from stolentee.backup.manifest import BackupError
from stolentee.db.engine import Database

_REFERENCED_KEYS = "SELECT original_key, cutout_key FROM designs"
_PG_TOOL_TIMEOUT_S = 6 * 3600


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the dump holds: its format, schema revision, and every object key a design names."""

    format: str  # "sqlite3" or "pgdump"
    schema_revision: str | None
    referenced_keys: frozenset[str]


def dump_format(database: Database) -> str:
    if database.is_sqlite:
        return "sqlite3"
    if database.is_postgres:
        return "pgdump"
    raise BackupError(f"cannot back up a {database.url.get_backend_name()} database")


def take_snapshot(database: Database, dest: Path) -> Snapshot:
    """Write the database to ``dest`` (a new file) and say what it holds."""
    if dump_format(database) == "sqlite3":
        return _sqlite_snapshot(database, dest)
    return _postgres_snapshot(database, dest)


def _rows(conn: sqlite3.Connection, sql: str) -> list[tuple[object, ...]]:
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:  # no such table: a database never migrated
        return []


def _sqlite_path(database: Database) -> str:
    path = database.url.database
    if not path or path == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return path


def _sqlite_snapshot(database: Database, dest: Path) -> Snapshot:
    source = sqlite3.connect(f"file:{_sqlite_path(database)}?mode=ro", uri=True, timeout=30)
    copy = sqlite3.connect(dest)
    try:
        source.backup(copy)
        keys = _keys(_rows(copy, _REFERENCED_KEYS))
        revision = _rows(copy, "SELECT version_num FROM alembic_version")
    except sqlite3.Error as exc:
        raise BackupError(f"could not back up the SQLite database: {exc}") from exc
    finally:
        source.close()
        copy.close()
    return Snapshot("sqlite3", str(revision[0][0]) if revision else None, keys)


def _keys(rows: list[tuple[object, ...]]) -> frozenset[str]:
    return frozenset(str(key) for row in rows for key in row if key)


# --- PostgreSQL --------------------------------------------------------------------------------


def _libpq(url: URL) -> tuple[str, dict[str, str]]:
    """A libpq connection string for the tools, and their environment (the password there,
    never on a command line)."""
    plain = url.set(drivername="postgresql", password=None)
    env = {**os.environ}
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    return plain.render_as_string(hide_password=False), env


def pg_tool(name: str, server_major: int) -> str:
    """``pg_dump`` / ``pg_restore`` of a client at least as new as the server (Debian keeps
    each major version's tools in ``/usr/lib/postgresql/N/bin``)."""
    candidates = [
        f"/usr/lib/postgresql/{server_major}/bin/{name}",
        *sorted(str(path) for path in Path("/usr/lib/postgresql").glob(f"*/bin/{name}")),
        shutil.which(name) or "",
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            found = _tool_major(candidate)
            if found is not None and found >= server_major:
                return candidate
    raise BackupError(
        f"{name} for PostgreSQL {server_major} or newer is not installed: on Debian, "
        f"`apt-get install postgresql-client-{server_major}`"
    )


def _tool_major(path: str) -> int | None:
    try:
        # The tool's own path, found above; no shell, no user input in the arguments.
        command = [path, "--version"]
        out = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)  # noqa: S603
        out_text = out.stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"(\d+)(?:\.\d+)?", out_text)
    return int(match[1]) if match else None


def _server_major(database: Database) -> int:
    with database.engine.connect() as conn:
        number = int(conn.execute(text("SHOW server_version_num")).scalar_one())
    return number // 10000


def _run(args: list[str], env: dict[str, str], what: str) -> None:
    try:
        # args: the found tool, fixed options, our own paths and the configured URL; no shell.
        subprocess.run(  # noqa: S603
            args, env=env, capture_output=True, text=True, timeout=_PG_TOOL_TIMEOUT_S, check=True
        )
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or exc.stdout or "").strip().splitlines()
        raise BackupError(f"{what} failed: {' / '.join(detail[-3:]) or exc}") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackupError(f"{what} failed: {exc}") from None


def _postgres_snapshot(database: Database, dest: Path) -> Snapshot:
    pg_dump = pg_tool("pg_dump", _server_major(database))
    dsn, env = _libpq(database.url)
    with _exported_snapshot(database) as (snapshot_id, keys, revision):
        _run(
            [pg_dump, "--format=custom", "--no-owner", f"--snapshot={snapshot_id}", "--file",
             str(dest), f"--dbname={dsn}"],
            env,
            "pg_dump",
        )  # fmt: skip
    return Snapshot("pgdump", revision, keys)


@contextmanager
def _exported_snapshot(
    database: Database,
) -> Iterator[tuple[str, frozenset[str], str | None]]:
    """A read-only repeatable-read transaction whose snapshot pg_dump joins, held open while
    the dump runs; the designs' keys and the schema revision as that snapshot sees them."""
    with database.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            conn.execute(text("SET TRANSACTION READ ONLY"))
            snapshot_id = str(conn.execute(text("SELECT pg_export_snapshot()")).scalar_one())
            tables = set(
                conn.execute(
                    text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
                ).scalars()
            )
            rows = conn.execute(text(_REFERENCED_KEYS)).all() if "designs" in tables else []
            revision = None
            if "alembic_version" in tables:
                revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            yield snapshot_id, _keys([tuple(row) for row in rows]), revision


# --- restoring ---------------------------------------------------------------------------------


def restore_dump(database: Database, dump: Path, dump_kind: str) -> None:
    """Replace the database's contents with the dump's (its schema revision as it was)."""
    if dump_kind != dump_format(database):
        raise BackupError(
            f"this backup holds a {dump_kind} database; the configured database is "
            f"{database.url.get_backend_name()} (restore into the same kind)"
        )
    if dump_kind == "sqlite3":
        database.engine.dispose()  # no pooled connection holds the old pages
        source = sqlite3.connect(f"file:{dump}?mode=ro", uri=True)
        target = sqlite3.connect(_sqlite_path(database), timeout=30)
        try:
            source.backup(target)  # page by page, under SQLite's own locking (WAL included)
        except sqlite3.Error as exc:
            raise BackupError(f"could not restore the SQLite database: {exc}") from exc
        finally:
            source.close()
            target.close()
        return
    database.engine.dispose()
    pg_restore = pg_tool("pg_restore", _server_major(database))
    dsn, env = _libpq(database.url)
    _run(
        [pg_restore, "--clean", "--if-exists", "--no-owner", "--single-transaction",
         f"--dbname={dsn}", str(dump)],
        env,
        "pg_restore",
    )  # fmt: skip
