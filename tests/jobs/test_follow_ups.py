"""Follow-up jobs and per-kind backoff in the queue, and the design callback's follow-up: the
callback job is queued in the transaction that makes the design's job final, and only then.

SQLite and PostgreSQL, fake UTC clock, in-memory transport (as in test_queue.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from stolentee.config import ApiSettings, QueueSettings
from stolentee.db import migrate
from stolentee.db.engine import Database
from stolentee.db.models import Base, Job
from stolentee.designs.callbacks import CALLBACK_JOB, CallbackSender
from stolentee.designs.jobs import DESIGN_JOB, design_handler
from stolentee.designs.store import DesignRecord, DesignStore
from stolentee.jobs.heartbeat import Heartbeat
from stolentee.jobs.queue import JobQueue
from stolentee.jobs.reaper import Reaper
from stolentee.jobs.runs import Completion, PermanentJobError
from stolentee.jobs.states import DONE, FAILED, PROCESSING, QUEUED
from stolentee.jobs.transport import Transport
from stolentee.removal.base import ImageKind, RemovalOptions, RemovalResult
from stolentee.runtime import build_queue
from stolentee.storage.backends.memory import MemoryStorage
from tests.fakes.clocks import FakeWallClock
from tests.jobs.designs import new_design

from .conftest import QUEUE_TEST_SETTINGS, DatabaseFactory
from .test_queue import OTHER, OWNER, drain

SECRET = "whsec-0123456789abcdef"


@pytest.fixture
def designs(database: Database) -> DesignStore:
    return DesignStore(database=database)


@pytest.fixture
def callback_queue(database: Database, transport: Transport, wall: FakeWallClock) -> JobQueue:
    api: dict[str, Any] = {
        "callbacks_enabled": True,
        "callback_secret": SECRET,
        "callback_internal_hosts": "127.0.0.1",
        "callback_max_attempts": 4,
        "callback_retry_backoff_s": 1.5,
    }
    sender = CallbackSender.from_settings(ApiSettings(**api))
    queue = build_queue(
        database=database,
        transport=transport,
        settings=QueueSettings(**QUEUE_TEST_SETTINGS),
        callbacks=sender,
    )
    queue.clock = wall
    return queue


def start_design_job(queue: JobQueue, designs: DesignStore, design_id: str) -> Job:
    job = queue.enqueue(DESIGN_JOB, {"design_id": design_id})
    designs.attach_job(design_id, job.id)
    leased = queue.lease(job.id, OWNER)
    assert leased is not None
    return leased


def callback_jobs(queue: JobQueue, designs: DesignStore, design_id: str) -> list[Job]:
    record = designs.get(design_id)
    if record.callback_job_id is None:
        return []
    job = queue.get(record.callback_job_id)
    assert job is not None
    return [job]


# --- the generic hook ---------------------------------------------------------------------------


def test_a_follow_up_runs_once_when_a_job_becomes_final(
    database: Database, transport: Transport, wall: FakeWallClock
) -> None:
    seen: list[tuple[str, str]] = []

    def hook(queue: JobQueue, session: Session, job: Job) -> Sequence[Job]:
        seen.append((job.id, job.state))
        follow = queue.new_job("after", {"of": job.id}, delay_s=2)
        session.add(follow)
        return [follow]

    queue = JobQueue(
        database=database,
        transport=transport,
        settings=QueueSettings(**QUEUE_TEST_SETTINGS),
        clock=wall,
        follow_ups={"first": hook},
    )
    done = queue.enqueue("first", {})
    retried = queue.enqueue("first", {})
    other = queue.enqueue("unhooked", {})
    drain(transport)
    for job in (done, retried, other):
        assert queue.lease(job.id, OWNER) is not None
    assert queue.complete(done.id, OWNER, {"ok": True})
    left = queue.fail(retried.id, OWNER, "boom", retryable=True)  # will be retried: not final
    assert left is not None and left.state == QUEUED
    assert queue.complete(other.id, OWNER)

    assert seen == [(done.id, DONE)]
    assert not queue.complete(done.id, OWNER)  # a second completion does nothing
    assert seen == [(done.id, DONE)]
    # Delayed messages: the retry's (10 s) and the follow-up's, sent after the commit (2 s).
    assert transport.pending() == 0 and transport.scheduled() == 2
    with database.session() as session:
        [follow] = session.query(Job).filter(Job.kind == "after").all()
    assert follow.payload == {"of": done.id} and follow.state == QUEUED
    assert (follow.available_at - wall.now).total_seconds() == 2


def test_the_follow_up_hook_gets_the_completed_row_and_within_what_was_written(
    database: Database, transport: Transport, wall: FakeWallClock
) -> None:
    """complete() returns only the kind from its UPDATE: the hook must still see every column
    of the row as completed (read back in the transaction), ``within`` what the UPDATE wrote."""
    hooked: list[dict[str, Any]] = []
    within_saw: list[dict[str, Any]] = []
    columns = [c.key for c in inspect(Job).columns]

    def hook(queue: JobQueue, session: Session, job: Job) -> Sequence[Job]:
        hooked.append({name: getattr(job, name) for name in columns})
        return []

    def within(conn: Any, job: Job) -> bool:
        within_saw.append({name: job.__dict__.get(name) for name in columns})
        return True

    queue = JobQueue(
        database=database,
        transport=transport,
        settings=QueueSettings(**QUEUE_TEST_SETTINGS),
        clock=wall,
        follow_ups={"first": hook},
    )
    plain = queue.enqueue("first", {"n": 1}, max_attempts=3)
    with_within = queue.enqueue("first", {"n": 2})
    drain(transport)
    for job in (plain, with_within):
        assert queue.lease(job.id, OWNER) is not None
    wall.advance(1.5)
    assert queue.complete(plain.id, OWNER, {"ok": 1})
    assert queue.complete(with_within.id, OWNER, {"ok": 2}, within=within)

    stored = queue.get_many([plain.id, with_within.id])
    assert hooked == [
        {name: getattr(stored[job_id], name) for name in columns}
        for job_id in (plain.id, with_within.id)
    ]
    assert hooked[0]["payload"] == {"n": 1} and hooked[0]["max_attempts"] == 3
    assert hooked[0]["started_at"] is not None and hooked[0]["state"] == DONE
    [seen] = within_saw
    assert seen["id"] == with_within.id and seen["kind"] == "first" and seen["state"] == DONE
    assert seen["result"] == {"ok": 2} and seen["lease_owner"] == OWNER
    assert seen["finished_at"] == stored[with_within.id].finished_at


def test_a_failing_hook_rolls_the_final_state_back(
    database: Database, transport: Transport, wall: FakeWallClock
) -> None:
    def hook(queue: JobQueue, session: Session, job: Job) -> Sequence[Job]:
        raise RuntimeError("the database went away")

    queue = JobQueue(
        database=database,
        transport=transport,
        settings=QueueSettings(**QUEUE_TEST_SETTINGS),
        clock=wall,
        follow_ups={"first": hook},
    )
    job = queue.enqueue("first", {})
    assert queue.lease(job.id, OWNER) is not None
    with pytest.raises(RuntimeError):
        queue.complete(job.id, OWNER)
    stored = queue.get(job.id)
    assert stored is not None and stored.state == "processing"  # not done without its follow-up


def test_the_reaper_settles_other_jobs_past_a_failing_hook(
    database: Database, transport: Transport, wall: FakeWallClock
) -> None:
    def hook(queue: JobQueue, session: Session, job: Job) -> Sequence[Job]:
        raise RuntimeError("a bug in the hook")

    queue = JobQueue(
        database=database,
        transport=transport,
        settings=QueueSettings(**QUEUE_TEST_SETTINGS),
        clock=wall,
        follow_ups={"hooked": hook},
    )
    stuck = queue.enqueue("hooked", {}, max_attempts=1)
    other = queue.enqueue("plain", {}, max_attempts=1)
    queue.lease(stuck.id, OWNER)
    wall.advance(1)
    queue.lease(other.id, OWNER)  # expires after the stuck one: reaped after it
    wall.advance(31)
    assert Reaper(queue).reap().failed == 1
    stored_stuck, stored_other = queue.get(stuck.id), queue.get(other.id)
    assert stored_stuck is not None and stored_stuck.state == "processing"  # next pass retries
    assert stored_other is not None and stored_other.state == FAILED


def test_backoff_can_be_set_per_job_kind(
    database: Database, transport: Transport, wall: FakeWallClock
) -> None:
    queue = JobQueue(
        database=database,
        transport=transport,
        settings=QueueSettings(**QUEUE_TEST_SETTINGS),  # 10 s
        clock=wall,
        retry_backoff_s={"quick": 0.5},
    )
    quick = queue.enqueue("quick", {})
    slow = queue.enqueue("slow", {})
    for job in (quick, slow):
        queue.lease(job.id, OWNER)
        left = queue.fail(job.id, OWNER, "boom")
        assert left is not None
    stored_quick, stored_slow = queue.get(quick.id), queue.get(slow.id)
    assert stored_quick is not None and stored_slow is not None
    assert (stored_quick.available_at - wall.now).total_seconds() == 0.5
    assert (stored_slow.available_at - wall.now).total_seconds() == 10
    # The reaper uses the same per-kind delay for a lost worker's second attempt (0.5 * 2).
    wall.advance(1)
    queue.lease(quick.id, OWNER)
    wall.advance(31)  # past the 30 s lease
    assert Reaper(queue).reap().requeued == 1
    stored_quick = queue.get(quick.id)
    assert stored_quick is not None
    assert (stored_quick.available_at - wall.now).total_seconds() == 1.0


# --- the design callback's follow-up ------------------------------------------------------------


def test_a_done_design_queues_its_callback_in_the_same_transaction(
    callback_queue: JobQueue, designs: DesignStore, transport: Transport
) -> None:
    new_design(designs, "d1", "http://127.0.0.1:9/hook")
    job = start_design_job(callback_queue, designs, "d1")
    before = designs.get("d1")
    drain(transport)
    assert callback_jobs(callback_queue, designs, "d1") == []

    assert callback_queue.complete(job.id, OWNER, {"ok": True})

    [callback] = callback_jobs(callback_queue, designs, "d1")
    assert callback.kind == CALLBACK_JOB and callback.state == QUEUED
    assert callback.payload == {"design_id": "d1"}
    assert callback.max_attempts == 4  # STOLENTEE_CALLBACK_MAX_ATTEMPTS
    assert drain(transport) == [callback.id]
    assert designs.get("d1").updated_at == before.updated_at  # the design itself is unchanged


def test_only_a_final_failure_queues_the_callback(
    callback_queue: JobQueue, designs: DesignStore, transport: Transport, wall: FakeWallClock
) -> None:
    new_design(designs, "d2", "http://127.0.0.1:9/hook")
    job = start_design_job(callback_queue, designs, "d2")
    left = callback_queue.fail(job.id, OWNER, "provider busy", retryable=True)
    assert left is not None and left.state == QUEUED
    assert callback_jobs(callback_queue, designs, "d2") == []  # to be retried: not final

    wall.advance(60)
    assert callback_queue.lease(job.id, OWNER) is not None
    left = callback_queue.fail(job.id, OWNER, "not an image", retryable=False)
    assert left is not None and left.state == FAILED
    [callback] = callback_jobs(callback_queue, designs, "d2")
    assert callback.state == QUEUED


def test_a_design_given_up_by_the_reaper_queues_its_callback(
    callback_queue: JobQueue, designs: DesignStore, wall: FakeWallClock
) -> None:
    new_design(designs, "d3", "http://127.0.0.1:9/hook")
    job = callback_queue.enqueue(DESIGN_JOB, {"design_id": "d3"}, max_attempts=1)
    designs.attach_job("d3", job.id)
    assert callback_queue.lease(job.id, OWNER) is not None
    wall.advance(31)  # the worker died: its lease expires
    assert Reaper(callback_queue).reap().failed == 1
    [callback] = callback_jobs(callback_queue, designs, "d3")
    assert callback.kind == CALLBACK_JOB


def test_no_callback_without_a_url_or_a_design(
    callback_queue: JobQueue, designs: DesignStore, transport: Transport, database: Database
) -> None:
    new_design(designs, "d4", None)
    job = start_design_job(callback_queue, designs, "d4")
    assert callback_queue.complete(job.id, OWNER)
    assert callback_jobs(callback_queue, designs, "d4") == []

    orphan = callback_queue.enqueue(DESIGN_JOB, {"design_id": "gone"})
    callback_queue.lease(orphan.id, OWNER)
    assert callback_queue.fail(orphan.id, OWNER, "design deleted", retryable=False) is not None
    with database.session() as session:
        kinds = [job.kind for job in session.query(Job).all()]
    assert CALLBACK_JOB not in kinds


def test_callback_jobs_use_their_own_backoff(
    callback_queue: JobQueue, designs: DesignStore, wall: FakeWallClock
) -> None:
    new_design(designs, "d5", "http://127.0.0.1:9/hook")
    job = start_design_job(callback_queue, designs, "d5")
    callback_queue.complete(job.id, OWNER)
    [callback] = callback_jobs(callback_queue, designs, "d5")
    assert callback_queue.lease(callback.id, OWNER) is not None
    left = callback_queue.fail(callback.id, OWNER, "HTTP 503", retryable=True)
    assert left is not None
    assert (left.available_at - wall.now).total_seconds() == 1.5  # not the queue's 10 s


# --- schema --------------------------------------------------------------------------------------


def _mentions_designs(diff: Any) -> bool:
    items = diff if isinstance(diff, list) else [diff]
    for item in items:
        for part in item:
            table = getattr(part, "table", None)
            if getattr(table, "name", None) == "designs" or part == "designs":
                return True
    return False


def test_migration_0007_matches_the_model(database: Database) -> None:
    with database.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(context, Base.metadata)
    assert [d for d in diffs if _mentions_designs(d)] == []
    columns = {column["name"] for column in inspect(database.engine).get_columns("designs")}
    assert {"callback_url", "callback_job_id"} <= columns


def test_migration_0007_downgrades_and_keeps_designs(
    make_database: DatabaseFactory, database_url: str
) -> None:
    db = make_database(url=database_url)
    migrate.upgrade(db, "0006_removal_stats")
    store = DesignStore(database=db)
    with db.session() as session:  # a design from before callbacks existed (raw insert)
        session.execute(
            Base.metadata.tables["designs"]
            .insert()
            .values(
                id="old",
                owner="shop",
                original_key="uploads/old/original.png",
                original_content_type="image/png",
                original_width=1,
                original_height=1,
                kind="auto",
                output_format="png",
                created_at=datetime(2026, 1, 1, tzinfo=UTC),
                updated_at=datetime(2026, 1, 1, tzinfo=UTC),
            )
        )
    assert migrate.upgrade(db, "0007_design_callbacks") == "0007_design_callbacks"
    record = store.get("old")
    assert record.callback_url is None and record.callback_job_id is None
    assert migrate.downgrade(db, "0006_removal_stats") == "0006_removal_stats"
    columns = {column["name"] for column in inspect(db.engine).get_columns("designs")}
    assert "callback_url" not in columns
    assert migrate.upgrade(db) == migrate.head_revision()


# --- the design job's completion: result, done and callback in one transaction ----------------


class FakeRemover:
    """Returns the same small cutout for any input (the pipeline's storage path stays real)."""

    name = "fake"

    def remove(self, data: bytes, options: RemovalOptions) -> RemovalResult:
        return RemovalResult(
            data=b"cutout of " + data,
            content_type="image/png",
            width=10,
            height=10,
            kind=ImageKind.GRAPHIC,
            method="fake",
            foreground=None,
            input_width=10,
            input_height=10,
        )


def run_design_handler(
    queue: JobQueue, designs: DesignStore, storage: MemoryStorage, job: Job
) -> Completion:
    storage.put(f"uploads/{job.payload['design_id']}/original.png", b"png bytes")
    handler = design_handler(designs=designs, storage=storage, remover=FakeRemover())
    heartbeat = Heartbeat(queue=queue, job_id=job.id, owner=OWNER, interval_s=10)
    completion = handler(job, heartbeat)
    assert isinstance(completion, Completion)
    return completion


def finish(queue: JobQueue, job: Job, completion: Completion, owner: str = OWNER) -> bool:
    """What the worker does with a handler's Completion."""
    completed = queue.complete(job.id, owner, completion.result, within=completion.within)
    if completion.after is not None:
        completion.after(completed)
    return completed


class Statements:
    """SQL statements run on a database while the block runs."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.seen: list[str] = []

    def _on(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.seen.append(" ".join(statement.split()))

    def __enter__(self) -> Statements:
        event.listen(self.database.engine, "before_cursor_execute", self._on)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.database.engine, "before_cursor_execute", self._on)

    def updates(self, table: str) -> list[str]:
        return [s for s in self.seen if s.upper().startswith(f"UPDATE {table.upper()} ")]


def test_the_design_result_commits_with_the_jobs_completion_or_not_at_all(
    callback_queue: JobQueue, designs: DesignStore, database: Database, wall: FakeWallClock
) -> None:
    storage = MemoryStorage()
    new_design(designs, "d6", "http://127.0.0.1:9/hook")
    job = start_design_job(callback_queue, designs, "d6")
    completion = run_design_handler(callback_queue, designs, storage, job)
    assert designs.get("d6").cutout_key is None  # nothing recorded before the completion

    # A hook that fails: done, the design's result and the callback roll back together.
    def broken(queue: JobQueue, session: Session, done: Job) -> Sequence[Job]:
        raise RuntimeError("hook failed")

    failing = JobQueue(
        database=database,
        transport=callback_queue.transport,
        settings=callback_queue.settings,
        clock=wall,
        follow_ups={DESIGN_JOB: broken},
    )
    with pytest.raises(RuntimeError, match="hook failed"):
        failing.complete(job.id, OWNER, completion.result, within=completion.within)
    stored = callback_queue.get(job.id)
    assert stored is not None and stored.state == PROCESSING and stored.result is None
    assert designs.get("d6").cutout_key is None
    assert callback_jobs(callback_queue, designs, "d6") == []

    # A run that lost its lease writes nothing at all, the design included.
    assert not finish(callback_queue, job, completion, owner=OTHER)
    assert designs.get("d6").cutout_key is None

    assert finish(callback_queue, job, completion)
    record = designs.get("d6")
    stored = callback_queue.get(job.id)
    assert stored is not None and stored.state == DONE
    assert stored.result is not None
    assert record.cutout_key is not None and record.cutout_key == stored.result["cutout_key"]
    assert record.result == stored.result
    assert storage.exists(record.cutout_key)
    [callback] = callback_jobs(callback_queue, designs, "d6")
    assert callback.state == QUEUED


def test_a_design_without_a_callback_url_skips_the_callback_claim(
    callback_queue: JobQueue, designs: DesignStore, database: Database
) -> None:
    storage = MemoryStorage()
    new_design(designs, "d7", None)
    new_design(designs, "d8", "http://127.0.0.1:9/hook")
    for design_id, claims in (("d7", 0), ("d8", 1)):
        job = start_design_job(callback_queue, designs, design_id)
        completion = run_design_handler(callback_queue, designs, storage, job)
        with Statements(database) as statements:
            assert finish(callback_queue, job, completion)
        # One transaction: the job's UPDATE, the design's UPDATE, and the claim only if due.
        assert len(statements.updates("jobs")) == 1
        design_updates = statements.updates("designs")
        assert len(design_updates) == 1 + claims
        assert sum("callback_job_id=" in s.replace(" ", "") for s in design_updates) == claims
        assert designs.get(design_id).cutout_key is not None
    assert callback_jobs(callback_queue, designs, "d7") == []
    assert len(callback_jobs(callback_queue, designs, "d8")) == 1


def test_a_design_deleted_while_processing_leaves_no_cutout(
    callback_queue: JobQueue, designs: DesignStore
) -> None:
    storage = MemoryStorage()
    new_design(designs, "d9", "http://127.0.0.1:9/hook")
    job = start_design_job(callback_queue, designs, "d9")
    completion = run_design_handler(callback_queue, designs, storage, job)
    assert completion.result is not None
    cutout = completion.result["cutout_key"]
    assert storage.exists(cutout)
    designs.delete("d9", owner="shop")

    assert finish(callback_queue, job, completion)  # the job is done all the same
    assert not storage.exists(cutout)  # and the orphaned cutout is removed after the commit


def test_a_design_job_reads_its_design_in_the_lease_transaction(
    callback_queue: JobQueue, designs: DesignStore, database: Database
) -> None:
    storage = MemoryStorage()
    storage.put("uploads/d10/original.png", b"png bytes")
    new_design(designs, "d10", None)
    job = callback_queue.enqueue(DESIGN_JOB, {"design_id": "d10"})
    designs.attach_job("d10", job.id)
    with Statements(database) as statements:
        leased = callback_queue.lease_with_context(job.id, OWNER)
    assert leased is not None and leased.job.state == PROCESSING
    assert isinstance(leased.context, DesignRecord) and leased.context.id == "d10"
    assert leased.context.job_id == job.id
    assert len(statements.updates("jobs")) == 1
    assert sum(s.upper().startswith("SELECT") for s in statements.seen) == 1

    handler = design_handler(designs=designs, storage=storage, remover=FakeRemover())
    heartbeat = Heartbeat(
        queue=callback_queue, job_id=job.id, owner=OWNER, interval_s=10, context=leased.context
    )
    with Statements(database) as statements:
        completion = handler(leased.job, heartbeat)
    assert statements.seen == []  # nothing read again: the lease brought the design
    assert isinstance(completion, Completion)
    assert finish(callback_queue, leased.job, completion)
    assert designs.get("d10").cutout_key is not None

    orphan = callback_queue.enqueue(DESIGN_JOB, {"design_id": "gone"})
    leased = callback_queue.lease_with_context(orphan.id, OWNER)
    assert leased is not None and leased.context is None
    heartbeat = Heartbeat(queue=callback_queue, job_id=orphan.id, owner=OWNER, interval_s=10)
    with pytest.raises(PermanentJobError, match="no longer exists"):
        handler(leased.job, heartbeat)
