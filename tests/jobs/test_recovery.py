"""Recovery from infrastructure failures: stalled runs, lost messages, leases the database refused.

Issue 23, items 3 and 4: a full disk or a restarting database must not fail good work for good
(stalls are retried without using up attempts, for ``stall_retry_s``), a lease the database
refused must not drop the message, and queued jobs whose messages vanished (Redis restarted
empty) are sent again within seconds, not after a whole lease.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, update

from stolentee.config import QueueSettings
from stolentee.db.engine import Database
from stolentee.db.models import Job
from stolentee.errors import DatabaseUnavailableError, ImageError, StorageError
from stolentee.jobs.heartbeat import Heartbeat
from stolentee.jobs.queue import JobQueue
from stolentee.jobs.reaper import RESEND_GRACE_S, Reaper
from stolentee.jobs.retry import RetryFilter, failed_jobs, retry_failed
from stolentee.jobs.states import DONE, FAILED, PROCESSING, QUEUED, utc_now
from stolentee.jobs.transport import Transport, memory_transport
from stolentee.jobs.worker import Worker
from tests.fakes.clocks import FakeWallClock

from .conftest import QueueFactory

OWNER = "host:1:abc/0"


def drain(transport: Transport) -> list[str]:
    ids = []
    while (job_id := transport.receive(0)) is not None:
        ids.append(job_id)
    return ids


def wait_for(predicate: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


# --- stalls: infrastructure failures do not use up attempts -----------------------------------


def test_a_stalled_run_is_queued_again_without_using_an_attempt(
    make_queue: QueueFactory, transport: Transport, wall: FakeWallClock
) -> None:
    queue = make_queue(max_attempts=1, retry_backoff_s=2.0, stall_backoff_max_s=5.0)
    job = queue.enqueue("design", {})
    drain(transport)
    first_stall = wall.now
    delays = []
    for stall in range(1, 5):
        assert queue.lease(job.id, OWNER) is not None
        left = queue.fail(job.id, OWNER, "StorageError: disk full", stalled=True)
        assert left is not None and left.state == QUEUED
        assert (left.attempts, left.stalls) == (0, stall)
        assert left.stalled_since == first_stall  # the window runs from the first stall
        delays.append((left.available_at - wall.now).total_seconds())
        wall.advance(delays[-1])
    assert delays == [2.0, 4.0, 5.0, 5.0]  # doubling, capped at stall_backoff_max_s
    stored = queue.get(job.id)
    assert stored is not None and stored.error == "StorageError: disk full"


def test_stalls_count_as_attempts_once_the_stall_window_is_over(
    make_queue: QueueFactory, transport: Transport, wall: FakeWallClock
) -> None:
    queue = make_queue(max_attempts=2, retry_backoff_s=1.0, stall_retry_s=60.0)
    job = queue.enqueue("design", {})
    assert queue.lease(job.id, OWNER) is not None
    first = queue.fail(job.id, OWNER, "OperationalError: server closed", stalled=True)
    assert first is not None and first.stalled_since == wall.now
    wall.advance(61)
    assert queue.lease(job.id, OWNER) is not None
    counted = queue.fail(job.id, OWNER, "OperationalError: server closed", stalled=True)
    assert counted is not None and (counted.state, counted.attempts) == (QUEUED, 1)
    wall.advance(10)
    assert queue.lease(job.id, OWNER) is not None
    final = queue.fail(job.id, OWNER, "OperationalError: server closed", stalled=True)
    assert final is not None and final.state == FAILED
    assert final.error == "OperationalError: server closed (gave up after 2 attempts)"


def test_a_stall_window_of_zero_makes_stalls_ordinary_failures(
    make_queue: QueueFactory, transport: Transport
) -> None:
    queue = make_queue(max_attempts=1, stall_retry_s=0)
    job = queue.enqueue("design", {})
    assert queue.lease(job.id, OWNER) is not None
    left = queue.fail(job.id, OWNER, "StorageError: disk full", stalled=True)
    assert left is not None and left.state == FAILED


def test_an_ordinary_failure_ends_the_stall_window(
    make_queue: QueueFactory, transport: Transport, wall: FakeWallClock
) -> None:
    queue = make_queue(max_attempts=3, retry_backoff_s=1.0)
    job = queue.enqueue("design", {})
    assert queue.lease(job.id, OWNER) is not None
    assert queue.fail(job.id, OWNER, "disk full", stalled=True) is not None
    wall.advance(5)
    assert queue.lease(job.id, OWNER) is not None
    left = queue.fail(job.id, OWNER, "RuntimeError: bug")
    assert left is not None and left.stalled_since is None and left.attempts == 1


# --- messages the transport lost ---------------------------------------------------------------


def test_jobs_whose_messages_vanished_are_sent_again_after_the_grace(
    database: Database, worker_transport: Transport, wall: FakeWallClock
) -> None:
    queue = JobQueue(
        database=database,
        transport=worker_transport,
        settings=QueueSettings(lease_s=600.0),
        clock=wall,
    )
    reaper = Reaper(queue)
    ids = [queue.enqueue("design", {"n": n}).id for n in range(5)]
    assert reaper.resend_missing() == 0  # every job has its message
    worker_transport.flush()  # Redis restarted empty
    assert reaper.resend_missing() == 0  # just sent: maybe still on the way
    wall.advance(RESEND_GRACE_S + 0.1)
    assert reaper.resend_missing() == 5
    assert sorted(drain(worker_transport)) == sorted(ids)
    assert reaper.resend_missing() == 0  # sent again just now
    assert not Reaper(queue).reap()  # the long re-send after lease_s has nothing to add


def test_only_as_many_jobs_as_messages_are_missing_are_sent_again(
    make_queue: QueueFactory, transport: Transport, wall: FakeWallClock
) -> None:
    queue = make_queue(lease_s=600.0)
    reaper = Reaper(queue)
    old = [queue.enqueue("design", {"n": n}).id for n in range(3)]
    wall.advance(10)
    drain(transport)
    fresh = queue.enqueue("design", {"n": 3}).id  # its message is there
    wall.advance(RESEND_GRACE_S + 1)
    assert reaper.resend_missing() == 3
    assert sorted(drain(transport)) == sorted([*old, fresh])


def test_a_processing_or_delayed_job_is_not_counted_as_missing_its_message(
    make_queue: QueueFactory, transport: Transport, wall: FakeWallClock
) -> None:
    queue = make_queue(lease_s=600.0, retry_backoff_s=30.0)
    reaper = Reaper(queue)
    running = queue.enqueue("design", {})
    retried = queue.enqueue("design", {})
    drain(transport)
    assert queue.lease(running.id, OWNER) is not None
    assert queue.lease(retried.id, OWNER) is not None
    assert queue.fail(retried.id, OWNER, "boom") is not None  # delayed message, 30 s
    wall.advance(RESEND_GRACE_S + 1)
    assert reaper.resend_missing() == 0
    assert transport.scheduled() == 1


# --- the worker: leases refused, stalls, outcomes stored once the database is back ------------

FAST: dict[str, Any] = {
    "lease_s": 5.0,
    "heartbeat_s": 0.2,
    "max_attempts": 1,
    "retry_backoff_s": 0.05,
    "reaper_interval_s": 60.0,  # the long re-send never runs during these tests
    "resend_check_s": 60.0,
}


def test_a_lease_the_database_refused_is_tried_again_not_dropped(database: Database) -> None:
    refusals = {"left": 3}

    def flaky_lease_hook(conn: Connection, job: Job) -> None:
        if refusals["left"] > 0:
            refusals["left"] -= 1
            raise DatabaseUnavailableError("cannot reach the database: restarting")

    transport = memory_transport(poll_s=0.05)
    queue = JobQueue(
        database=database,
        transport=transport,
        settings=QueueSettings(**FAST),
        on_lease={"work": flaky_lease_hook},
    )
    worker = Worker(queue=queue, handlers={"work": lambda job, hb: {"ok": True}}, concurrency=1)
    worker.start()
    try:
        job = queue.enqueue("work", {})
        # Three refusals: re-sent after 0.5, 1 and 2 s; done long before the reaper's re-send.
        wait_for(lambda: (queue.get(job.id) or job).state == DONE, timeout_s=10)
    finally:
        worker.stop(graceful_timeout_s=0)
    done = queue.get(job.id)
    assert done is not None and done.attempts == 1 and refusals["left"] == 0


def test_storage_failures_stall_the_job_past_its_attempts_and_it_then_succeeds(
    database: Database,
) -> None:
    failures = {"left": 3}

    def handler(job: Job, heartbeat: Heartbeat) -> dict[str, Any]:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise StorageError("the disk is full")
        return {"ok": True}

    transport = memory_transport(poll_s=0.05)
    queue = JobQueue(database=database, transport=transport, settings=QueueSettings(**FAST))
    worker = Worker(queue=queue, handlers={"work": handler}, concurrency=1)
    worker.start()
    try:
        job = queue.enqueue("work", {})
        wait_for(lambda: (queue.get(job.id) or job).state == DONE)
    finally:
        worker.stop(graceful_timeout_s=0)
    done = queue.get(job.id)
    assert done is not None and (done.attempts, done.stalls) == (1, 3)


def test_an_input_error_still_fails_at_once(database: Database) -> None:
    def handler(job: Job, heartbeat: Heartbeat) -> dict[str, Any]:
        raise ImageError("not an image")

    queue = JobQueue(
        database=database,
        transport=memory_transport(poll_s=0.05),
        settings=QueueSettings(**{**FAST, "max_attempts": 3}),
    )
    worker = Worker(
        queue=queue, handlers={"work": handler}, concurrency=1, permanent_errors=(ImageError,)
    )
    worker.start()
    try:
        job = queue.enqueue("work", {})
        wait_for(lambda: (queue.get(job.id) or job).state not in (QUEUED, PROCESSING))
    finally:
        worker.stop(graceful_timeout_s=0)
    failed = queue.get(job.id)
    assert failed is not None and (failed.state, failed.attempts, failed.stalls) == (FAILED, 1, 0)


# --- retrying failed jobs by hand --------------------------------------------------------------


def test_retry_failed_queues_the_selected_failed_jobs_once(
    make_queue: QueueFactory, transport: Transport, wall: FakeWallClock
) -> None:
    hooked: list[list[str]] = []
    queue = make_queue(max_attempts=1)
    queue.on_retry["design"] = lambda session, ids: hooked.append(sorted(ids))
    early, late, other = (queue.enqueue(kind, {}) for kind in ("design", "design", "callback"))
    for job in (early, late, other):
        assert queue.lease(job.id, OWNER) is not None
        assert queue.fail(job.id, OWNER, "boom") is not None
        wall.advance(60)
    running = queue.enqueue("design", {})
    drain(transport)

    since = early.created_at + timedelta(seconds=30)
    assert [j.id for j in failed_jobs(queue, RetryFilter(since=since))] == [late.id, other.id]
    assert retry_failed(queue, RetryFilter(kind="design")) == [early.id, late.id]
    assert hooked == [sorted([early.id, late.id])]
    assert sorted(drain(transport)) == sorted([early.id, late.id])
    again = queue.get(early.id)
    assert again is not None and (again.state, again.attempts, again.finished_at) == (
        QUEUED,
        0,
        None,
    )
    assert retry_failed(queue, RetryFilter(kind="design")) == []  # nothing failed any more
    assert retry_failed(queue, RetryFilter(job_ids=[running.id, other.id])) == [other.id]


def test_a_lease_committed_but_unanswered_is_handed_back_not_left_to_expire(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database went away after committing a lease and before answering: the worker must
    not leave that lease (10 minutes here) to expire."""
    transport = memory_transport(poll_s=0.05)
    queue = JobQueue(
        database=database, transport=transport, settings=QueueSettings(**{**FAST, "lease_s": 600})
    )
    real_lease = queue.lease_with_context
    lost_answers = {"left": 1}

    def lease_then_lose_the_answer(job_id: str, owner: str) -> Any:
        leased = real_lease(job_id, owner)
        if lost_answers["left"] > 0:
            lost_answers["left"] -= 1
            raise DatabaseUnavailableError(
                "cannot reach the database: server closed the connection"
            )
        return leased

    monkeypatch.setattr(queue, "lease_with_context", lease_then_lose_the_answer)
    worker = Worker(queue=queue, handlers={"work": lambda job, hb: {"ok": True}}, concurrency=2)
    worker.start()
    try:
        job = queue.enqueue("work", {})
        wait_for(lambda: (queue.get(job.id) or job).state == DONE, timeout_s=20)
    finally:
        worker.stop(graceful_timeout_s=0)
    assert lost_answers["left"] == 0


def test_a_completion_the_database_forgot_is_handed_back_within_heartbeats(
    database: Database,
) -> None:
    """A crash took the worker's last asynchronous commit (synchronous_commit off): the row
    says the job is still processing in this worker's name, though none of its threads runs
    it. The worker hands it back within a few heartbeats, not after its 10-minute lease."""
    transport = memory_transport(poll_s=0.05)
    settings = QueueSettings(**{**FAST, "lease_s": 600, "resend_check_s": 0.2})
    queue = JobQueue(database=database, transport=transport, settings=settings)
    runs = {"count": 0}

    def handler(job: Job, heartbeat: Heartbeat) -> dict[str, Any]:
        runs["count"] += 1
        return {"run": runs["count"]}

    worker = Worker(queue=queue, handlers={"work": handler}, concurrency=1)
    worker.start()
    try:
        job = queue.enqueue("work", {})
        wait_for(lambda: (queue.get(job.id) or job).state == DONE)
        with database.session() as session:  # what crash recovery leaves behind
            session.execute(
                update(Job)
                .where(Job.id == job.id)
                .values(
                    state=PROCESSING,
                    lease_owner=f"{worker.owner}/0",
                    lease_expires_at=utc_now() + timedelta(seconds=600),
                    heartbeat_at=utc_now() - timedelta(seconds=60),
                    finished_at=None,
                    result=None,
                )
            )
        wait_for(lambda: (queue.get(job.id) or job).state == DONE and runs["count"] == 2)
    finally:
        worker.stop(graceful_timeout_s=0)
    again = queue.get(job.id)
    assert again is not None and again.result == {"run": 2}
