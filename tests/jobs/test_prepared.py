"""The queue's hot statements on the driver's cursor (``stolentee.db.prepared``): the same
values in and out as through the ORM, and the same timeout, error and event handling as any
other statement. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest
from sqlalchemy import Table, bindparam, column, event, insert, select, text
from sqlalchemy import exc as sa_exc

from stolentee.db.engine import Database
from stolentee.db.models import Job
from stolentee.db.prepared import PreparedStatement
from stolentee.designs.store import DesignStore, design_in, record_result_in
from stolentee.errors import DatabaseUnavailableError, QueryTimeoutError
from stolentee.jobs.queue import JobQueue
from stolentee.jobs.states import DONE, PROCESSING
from tests.fakes.clocks import FakeWallClock
from tests.jobs.designs import new_design

from .conftest import DatabaseFactory

OWNER = "host:1:abc/0"
JOB_COLUMNS = [c.key for c in Job.__table__.c]


def columns_of(job: Job) -> dict[str, Any]:
    return {name: getattr(job, name) for name in JOB_COLUMNS}


def test_lease_and_complete_return_the_rows_the_orm_reads(
    queue: JobQueue, wall: FakeWallClock
) -> None:
    job = queue.enqueue("design", {"design_id": "d1", "nested": {"ü": [1, 2.5, None]}})
    leased = queue.lease(job.id, OWNER)
    assert leased is not None
    stored = queue.get(job.id)
    assert stored is not None
    assert columns_of(leased) == columns_of(stored)
    assert (leased.state, leased.attempts, leased.lease_owner) == (PROCESSING, 1, OWNER)
    assert leased.started_at == wall.now and leased.started_at.tzinfo is not None
    assert leased.payload == {"design_id": "d1", "nested": {"ü": [1, 2.5, None]}}

    wall.advance(2.5)
    assert queue.complete(job.id, OWNER, {"method": "stub", "ms": 1.5})
    done = queue.get(job.id)
    assert done is not None
    assert (done.state, done.result, done.error) == (DONE, {"method": "stub", "ms": 1.5}, None)
    assert (done.finished_at, done.lease_expires_at) == (wall.now, None)
    assert not queue.complete(job.id, OWNER, {"again": True})  # not processing any more


def test_none_results_are_sql_null_on_jobs(queue: JobQueue) -> None:
    job = queue.enqueue("design", {})
    assert queue.lease(job.id, OWNER) is not None
    assert queue.complete(job.id, OWNER, None)
    with queue.database.engine.connect() as conn:
        raw = conn.execute(text("SELECT result IS NULL FROM jobs WHERE id = :id"), {"id": job.id})
        assert bool(raw.scalar_one())


def test_design_read_and_result_match_the_store(database: Database) -> None:
    designs = DesignStore(database=database)
    new_design(designs, "d1")
    with database.engine.begin() as conn:
        assert design_in(conn, "d1") == designs.get("d1")
        assert design_in(conn, "missing") is None
    result = {"method": "colour-key", "timings_ms": {"decode": 1.25}, "note": "äö"}
    with database.engine.begin() as conn:
        recorded = record_result_in(conn, "d1", cutout_key="cutouts/x.png", result=result)
        assert recorded is not None and not recorded.callback_due
        assert record_result_in(conn, "missing", cutout_key="k", result={}) is None
    stored = designs.get("d1")
    assert (stored.cutout_key, stored.result) == ("cutouts/x.png", result)
    assert stored.updated_at.tzinfo is not None and stored.updated_at > stored.created_at


def test_statements_run_only_inside_a_transaction(database: Database) -> None:
    one = PreparedStatement(text("SELECT 1").columns(column("one")))
    with database.engine.connect() as conn, pytest.raises(RuntimeError):
        one.rows(conn, {})
    with database.engine.begin() as conn:
        assert one.rows(conn, {}) == [(1,)]


def test_cursor_events_see_every_statement(database: Database) -> None:
    """The query watchdog, the metrics' timer and statement counters listen to these."""
    seen: list[tuple[str, str]] = []

    def before(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        seen.append(("before", statement.split()[0]))

    def after(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        seen.append(("after", statement.split()[0]))

    designs = DesignStore(database=database)
    new_design(designs, "d1")
    event.listen(database.engine, "before_cursor_execute", before)
    event.listen(database.engine, "after_cursor_execute", after)
    try:
        with database.engine.begin() as conn:
            design_in(conn, "d1")
            record_result_in(conn, "d1", cutout_key="k", result={})
    finally:
        event.remove(database.engine, "before_cursor_execute", before)
        event.remove(database.engine, "after_cursor_execute", after)
    assert seen == [
        ("before", "SELECT"),
        ("after", "SELECT"),
        ("before", "UPDATE"),
        ("after", "UPDATE"),
    ]


def test_driver_errors_are_wrapped_and_roll_back(database: Database) -> None:
    jobs = cast(Table, Job.__table__)
    now = datetime.now(UTC)
    row = {
        "id": "j" * 32,
        "kind": "k",
        "payload": {},
        "state": "queued",
        "attempts": 0,
        "max_attempts": 1,
        "lost": 0,
        "stalls": 0,
        "available_at": now,
        "created_at": now,
    }
    add = PreparedStatement(
        insert(jobs).values(**{name: bindparam(name, type_=jobs.c[name].type) for name in row})
    )
    with database.engine.begin() as conn:
        add.rows(conn, row)

    def insert_twice() -> None:
        with database.engine.begin() as conn:
            add.rows(conn, {**row, "id": "k" * 32})
            add.rows(conn, row)  # the same primary key again

    with pytest.raises(sa_exc.IntegrityError):
        insert_twice()
    with database.engine.connect() as conn:
        ids = conn.execute(select(jobs.c.id)).scalars().all()
    assert ids == ["j" * 32]  # the failed transaction's first row was rolled back


def test_the_query_timeout_cancels_a_prepared_statement(
    make_database: DatabaseFactory, database_url: str
) -> None:
    db = make_database(url=database_url, query_timeout_s=0.3)
    if db.is_postgres:
        slow = "SELECT pg_sleep(30) IS NULL"
    else:  # counts to ten billion: minutes of work unless interrupted
        slow = (
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1e10) "
            "SELECT count(*) FROM c"
        )
    statement = PreparedStatement(text(slow).columns(column("x")))
    with pytest.raises(QueryTimeoutError), db.engine.begin() as conn:
        statement.rows(conn, {})
    assert db.figures().queries_cancelled == 1
    one = PreparedStatement(text("SELECT 1").columns(column("one")))
    with db.engine.begin() as conn:  # the pool's connections still work
        assert one.rows(conn, {}) == [(1,)]


@pytest.mark.postgres
def test_a_lost_connection_is_invalidated_and_reported(
    make_database: DatabaseFactory, pg_schema_url: str
) -> None:
    db = make_database(url=pg_schema_url)
    pid_of = PreparedStatement(text("SELECT pg_backend_pid()").columns(column("pid")))
    with db.engine.begin() as conn:
        [(pid,)] = pid_of.rows(conn, {})
    killer = make_database(url=pg_schema_url)
    with killer.engine.begin() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    with db.engine.connect() as conn:
        transaction = conn.begin()
        with pytest.raises(DatabaseUnavailableError):
            pid_of.rows(conn, {})
        assert conn.invalidated  # the pool will not hand this connection out again
        transaction.rollback()
    assert db.figures().invalidations >= 1
    with db.engine.begin() as conn:  # a new connection took its place
        [(new_pid,)] = pid_of.rows(conn, {})
    assert new_pid != pid
