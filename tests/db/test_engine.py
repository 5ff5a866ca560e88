"""The pool honours the seed's settings and reports what it is doing, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from stolentee.db.engine import Database
from stolentee.errors import (
    DatabaseBusyError,
    DatabaseUnavailableError,
    InsufficientStorageError,
    QueryTimeoutError,
)

from .conftest import DatabaseFactory


def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """Poll ``predicate``; a helper for waiting on other threads, not a timing assertion."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_pool_size_follows_environment(make_database: DatabaseFactory, database_url: str) -> None:
    assert make_database(url=database_url).pool.capacity == 5
    production = make_database(url=database_url, service={"env": "production"})
    assert production.pool.capacity == 15
    assert make_database(url=database_url, pool_max_connections=7).pool.capacity == 7


def test_figures_follow_checkouts(make_database: DatabaseFactory, database_url: str) -> None:
    db = make_database(url=database_url)
    start = db.figures()
    assert (start.total, start.idle, start.in_use, start.waiting) == (0, 0, 0, 0)

    first = db.engine.connect()
    second = db.engine.connect()
    first.execute(text("SELECT 1"))
    held = db.figures()
    assert (held.total, held.idle, held.in_use) == (2, 0, 2)
    assert held.connects == 2 and held.checkouts == 2

    first.close()
    one_back = db.figures()
    assert (one_back.total, one_back.idle, one_back.in_use) == (2, 1, 1)
    second.close()
    released = db.figures()
    assert (released.total, released.idle, released.in_use) == (2, 2, 0)
    assert released.checkins == 2


def test_exhausted_pool_counts_waiters_then_fails_busy(
    make_database: DatabaseFactory, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = make_database(url=database_url, pool_max_connections=1, pool_timeout_s=1.0)
    holder = db.engine.connect()
    outcome: list[BaseException] = []

    def contender() -> None:
        try:
            with db.engine.connect():
                pass
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=contender)
    thread.start()
    assert wait_until(lambda: db.figures().waiting == 1)
    assert db.figures().in_use == 1
    thread.join()
    holder.close()

    assert len(outcome) == 1 and isinstance(outcome[0], DatabaseBusyError)
    after = db.figures()
    assert after.waiting == 0 and after.exhaustions == 1 and after.timeouts == 1
    assert "database pool exhausted" in caplog.text


def test_waiter_gets_connection_when_one_is_returned(
    make_database: DatabaseFactory, database_url: str
) -> None:
    db = make_database(url=database_url, pool_max_connections=1, pool_timeout_s=30.0)
    holder = db.engine.connect()
    got: list[int] = []

    def contender() -> None:
        with db.engine.connect() as conn:
            got.append(conn.execute(text("SELECT 42")).scalar_one())

    thread = threading.Thread(target=contender)
    thread.start()
    assert wait_until(lambda: db.figures().waiting == 1)
    holder.close()
    thread.join()
    assert got == [42]
    assert db.figures().waiting == 0


def test_idle_connections_are_closed(make_database: DatabaseFactory, database_url: str) -> None:
    db = make_database(url=database_url, pool_idle_timeout_s=0.05)
    with db.engine.connect() as a, db.engine.connect() as b:
        a.execute(text("SELECT 1"))
        b.execute(text("SELECT 1"))
    assert db.figures().idle == 2
    time.sleep(0.1)
    assert db.close_idle() == 2
    figures = db.figures()
    assert (figures.total, figures.idle, figures.idle_closed) == (0, 0, 2)
    # The pool still works and opens a fresh connection.
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
    assert db.figures().total == 1


def test_fresh_idle_connections_are_kept(make_database: DatabaseFactory, database_url: str) -> None:
    db = make_database(url=database_url, pool_idle_timeout_s=60)
    with db.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert db.close_idle() == 0
    assert db.figures().idle == 1


def test_background_reaper_closes_idle_connections(
    make_database: DatabaseFactory, database_url: str
) -> None:
    db = make_database(url=database_url, pool_idle_timeout_s=0.1)
    db.start_idle_reaper()
    with db.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert wait_until(lambda: db.figures().total == 0)


def test_query_timeout_cancels_long_statement(
    make_database: DatabaseFactory, database_url: str
) -> None:
    db = make_database(url=database_url, query_timeout_s=0.3)
    if db.is_postgres:
        slow = "SELECT pg_sleep(30)"
    else:
        # Counts to ten billion: minutes of work unless interrupted.
        slow = (
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1e10) "
            "SELECT count(*) FROM c"
        )
    with db.engine.connect() as conn:
        with pytest.raises(QueryTimeoutError):
            conn.execute(text(slow))
        conn.rollback()
        # The same connection is usable afterwards, and short statements are not cancelled.
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
    assert db.figures().queries_cancelled == 1


def test_unreachable_database_is_reported(make_database: DatabaseFactory) -> None:
    db = make_database(url="postgresql://nobody@127.0.0.1:1/none", connect_timeout_s=2)
    with pytest.raises(DatabaseUnavailableError) as info:
        db.ping()
    assert "cannot reach the database" in info.value.detail


def test_sqlite_runs_in_wal_mode_with_foreign_keys(
    make_database: DatabaseFactory, sqlite_url: str
) -> None:
    db = make_database(url=sqlite_url)
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar_one() == 1


@pytest.mark.postgres
def test_postgres_statement_timeout_is_30s(
    make_database: DatabaseFactory, pg_schema_url: str
) -> None:
    db = make_database(url=pg_schema_url)
    with db.engine.connect() as conn:
        assert conn.execute(text("SHOW statement_timeout")).scalar_one() == "30s"
        # The URL's own options (here: search_path) are kept beside it.
        assert conn.execute(text("SHOW search_path")).scalar_one().startswith("t_")
        assert conn.execute(text("SHOW application_name")).scalar_one() == "stolentee"


@pytest.mark.postgres
def test_postgres_synchronous_commit_off_only_when_asked(
    make_database: DatabaseFactory, pg_schema_url: str
) -> None:
    """Workers' connections (DatabaseSettings.worker_synchronous_commit off) skip the WAL flush
    wait; every other Database keeps PostgreSQL's durable default, and the other options stay."""
    db = make_database(url=pg_schema_url)
    with db.engine.connect() as conn:
        assert conn.execute(text("SHOW synchronous_commit")).scalar_one() == "on"
    assert db.settings.worker_synchronous_commit is False
    worker = Database(settings=db.settings, synchronous_commit=False)
    try:
        with worker.engine.connect() as conn:
            assert conn.execute(text("SHOW synchronous_commit")).scalar_one() == "off"
            assert conn.execute(text("SHOW statement_timeout")).scalar_one() == "30s"
            assert conn.execute(text("SHOW search_path")).scalar_one().startswith("t_")
    finally:
        worker.dispose()


@pytest.mark.postgres
def test_postgres_idle_close_ends_server_session(
    make_database: DatabaseFactory, pg_schema_url: str
) -> None:
    db = make_database(url=pg_schema_url, pool_idle_timeout_s=0.05)
    with db.engine.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    time.sleep(0.1)
    assert db.close_idle() == 1
    observer = Database(settings=db.settings)
    try:

        def gone() -> bool:
            with observer.engine.connect() as conn:
                count = conn.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
                ).scalar_one()
            return bool(count == 0)

        assert wait_until(gone)
    finally:
        observer.dispose()


@pytest.mark.postgres
def test_postgres_connection_idle_too_long_is_replaced_on_checkout(
    make_database: DatabaseFactory, pg_schema_url: str
) -> None:
    db = make_database(url=pg_schema_url, pool_idle_timeout_s=0.05)
    with db.engine.connect() as conn:
        first_pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    time.sleep(0.1)
    with db.engine.connect() as conn:
        second_pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    assert first_pid != second_pid
    assert db.figures().invalidations >= 1


def test_a_full_sqlite_database_is_insufficient_storage_not_500(
    make_database: DatabaseFactory, tmp_path: Path
) -> None:
    """SQLite's "database or disk is full" (here: the page limit reached, the same error code a
    full disk gives) becomes InsufficientStorageError (507), and nothing stored is lost."""
    db = make_database(url=f"sqlite:///{tmp_path / 'full.db'}")
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE blobs (data BLOB)"))
        conn.execute(text("INSERT INTO blobs VALUES (zeroblob(1000))"))
    with db.engine.connect() as conn:
        pages = conn.execute(text("PRAGMA page_count")).scalar_one()
        conn.execute(text(f"PRAGMA max_page_count = {pages}"))
        with pytest.raises(InsufficientStorageError, match="no disk space left"):
            conn.execute(text("INSERT INTO blobs VALUES (zeroblob(100000))"))
        conn.rollback()
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM blobs")).scalar_one() == 1
