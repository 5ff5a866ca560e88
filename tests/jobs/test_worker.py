"""The worker in-process (threads), as the API server runs it on the embedded default."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, update

from stolentee.config import QueueSettings
from stolentee.db.engine import Database
from stolentee.db.models import Job
from stolentee.errors import ImageError, InvalidImageError
from stolentee.jobs.heartbeat import Heartbeat
from stolentee.jobs.queue import JobQueue
from stolentee.jobs.runs import Handler
from stolentee.jobs.states import DONE, FAILED, PROCESSING, QUEUED
from stolentee.jobs.transport import Transport
from stolentee.jobs.worker import Worker, default_owner

from .conftest import TransportFactory
from .handlers import EXPLODE, HANDLERS, REJECT, SLEEP_AND_WRITE, read_log

FAST: dict[str, Any] = {
    "lease_s": 2.0,
    "heartbeat_s": 0.1,
    "max_attempts": 3,
    "retry_backoff_s": 0.05,
    "reaper_interval_s": 0.2,
}


def wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


@pytest.fixture
def embedded(make_transport: TransportFactory) -> Transport:
    """The embedded default's transport: SqliteHuey in the data dir."""
    return make_transport()


@pytest.fixture
def fast_queue(database: Database, worker_transport: Transport) -> JobQueue:
    return JobQueue(database=database, transport=worker_transport, settings=QueueSettings(**FAST))


WorkerFactory = Callable[..., Worker]


@pytest.fixture
def make_worker(fast_queue: JobQueue) -> Iterator[WorkerFactory]:
    started: list[Worker] = []

    def factory(handlers: dict[str, Handler] | None = None, **options: Any) -> Worker:
        worker = Worker(queue=fast_queue, handlers=handlers or HANDLERS, **options)
        worker.start()
        started.append(worker)
        return worker

    yield factory
    for worker in started:
        worker.stop(graceful_timeout_s=0)


def states(queue: JobQueue, ids: list[str]) -> dict[str, str]:
    return {job_id: job.state for job_id, job in queue.get_many(ids).items()}


def test_owner_names_host_process_and_instance() -> None:
    host, pid, tag = default_owner().split(":")
    assert host and pid.isdigit() and len(tag) == 8


def test_runs_jobs_and_stores_their_results(
    fast_queue: JobQueue, make_worker: WorkerFactory, tmp_path: Path
) -> None:
    worker = make_worker(concurrency=3)
    ids = [
        fast_queue.enqueue(SLEEP_AND_WRITE, {"out": str(tmp_path), "n": n}).id for n in range(20)
    ]
    wait_for(lambda: set(states(fast_queue, ids).values()) == {DONE})
    jobs = fast_queue.get_many(ids)
    assert all(job.result is not None and len(job.result["sha256"]) == 64 for job in jobs.values())
    assert all(job.attempts == 1 for job in jobs.values())
    assert len(list((tmp_path / "cutouts").iterdir())) == 20
    assert worker.stats().done == 20


def test_a_job_that_always_raises_fails_after_its_attempts_while_others_run(
    fast_queue: JobQueue, make_worker: WorkerFactory, tmp_path: Path
) -> None:
    worker = make_worker(concurrency=2)
    bad = fast_queue.enqueue(EXPLODE, {"n": 7})
    good = [
        fast_queue.enqueue(SLEEP_AND_WRITE, {"out": str(tmp_path), "n": n}).id for n in range(5)
    ]
    wait_for(lambda: states(fast_queue, [bad.id]) == {bad.id: FAILED})
    wait_for(lambda: set(states(fast_queue, good).values()) == {DONE})
    failed = fast_queue.get(bad.id)
    assert failed is not None and failed.attempts == 3
    assert failed.error == "RuntimeError: boom 7 (gave up after 3 attempts)"
    assert worker.stats().failed_runs == 3


def test_a_permanent_error_or_an_unknown_kind_fails_at_once(
    fast_queue: JobQueue, make_worker: WorkerFactory
) -> None:
    make_worker()
    rejected = fast_queue.enqueue(REJECT, {})
    unknown = fast_queue.enqueue("no-such-kind", {})
    wait_for(lambda: set(states(fast_queue, [rejected.id, unknown.id]).values()) == {FAILED})
    jobs = fast_queue.get_many([rejected.id, unknown.id])
    assert jobs[rejected.id].error == "PermanentJobError: not an image"
    assert jobs[unknown.id].error == "no handler for job kind 'no-such-kind'"
    assert jobs[rejected.id].attempts == jobs[unknown.id].attempts == 1


def test_chosen_exception_types_are_permanent(
    fast_queue: JobQueue, make_worker: WorkerFactory
) -> None:
    def bad_input(job: Job, heartbeat: Heartbeat) -> dict[str, Any]:
        raise InvalidImageError("cannot decode the upload")

    make_worker({"bad": bad_input}, permanent_errors=(ImageError,))
    job = fast_queue.enqueue("bad", {})
    wait_for(lambda: states(fast_queue, [job.id]) == {job.id: FAILED})
    stored = fast_queue.get(job.id)
    assert stored is not None and stored.attempts == 1
    assert stored.error == "InvalidImageError: cannot decode the upload"


def test_a_result_that_cannot_be_stored_is_a_failed_run(
    fast_queue: JobQueue, make_worker: WorkerFactory
) -> None:
    make_worker({"odd": lambda job, hb: {"value": object()}})
    job = fast_queue.enqueue("odd", {})
    wait_for(lambda: states(fast_queue, [job.id]) == {job.id: FAILED})
    stored = fast_queue.get(job.id)
    assert stored is not None and stored.attempts == 3
    assert stored.error is not None and stored.error.startswith("storing the result failed")


def test_heartbeats_keep_a_job_longer_than_its_lease(
    database: Database, embedded: Transport, tmp_path: Path
) -> None:
    settings = QueueSettings(**{**FAST, "lease_s": 0.4, "reaper_interval_s": 0.05})
    queue = JobQueue(database=database, transport=embedded, settings=settings)
    worker = Worker(queue=queue, handlers=HANDLERS)  # beats every 0.1 s, reaps every 0.05 s
    worker.start()
    try:
        job = queue.enqueue(SLEEP_AND_WRITE, {"out": str(tmp_path), "n": 1, "sleep_s": 1.2})
        wait_for(lambda: states(queue, [job.id]) == {job.id: DONE}, timeout_s=15)
    finally:
        worker.stop(graceful_timeout_s=0)
    stored = queue.get(job.id)
    assert stored is not None and (stored.attempts, stored.lost) == (1, 0)
    assert [event for event, _, _ in read_log(tmp_path)] == ["start", "end"]
    assert worker.stats().reaper_passes > 10


def test_a_run_that_lost_its_lease_is_discarded(
    fast_queue: JobQueue, make_worker: WorkerFactory, database: Database
) -> None:
    finished = threading.Event()

    def slow(job: Job, heartbeat: Heartbeat) -> dict[str, Any]:
        wait_for(lambda: heartbeat.lost, timeout_s=10)
        finished.set()
        return {"stale": True}

    worker = make_worker({"slow": slow})
    job = fast_queue.enqueue("slow", {})
    wait_for(lambda: states(fast_queue, [job.id]) == {job.id: PROCESSING})
    with database.session() as session:  # another worker took it over
        session.execute(update(Job).where(Job.id == job.id).values(lease_owner="thief:1:x/0"))
    assert finished.wait(10)
    wait_for(lambda: worker.stats().discarded == 1)
    stored = fast_queue.get(job.id)
    assert stored is not None and stored.state == PROCESSING and stored.result is None
    assert stored.lease_owner == "thief:1:x/0"


def test_graceful_stop_finishes_running_jobs(
    fast_queue: JobQueue, make_worker: WorkerFactory, tmp_path: Path
) -> None:
    worker = make_worker()
    job = fast_queue.enqueue(SLEEP_AND_WRITE, {"out": str(tmp_path), "n": 1, "sleep_s": 0.5})
    wait_for(lambda: states(fast_queue, [job.id]) == {job.id: PROCESSING})
    worker.stop(graceful_timeout_s=10)
    assert states(fast_queue, [job.id]) == {job.id: DONE}
    assert worker.stats().released == 0


def test_stop_past_the_deadline_hands_jobs_back(
    fast_queue: JobQueue, make_worker: WorkerFactory, tmp_path: Path
) -> None:
    worker = make_worker()
    payload = {"out": str(tmp_path), "n": 1, "sleep_s": 30, "cooperative": True}
    job = fast_queue.enqueue(SLEEP_AND_WRITE, payload)
    waiting = fast_queue.enqueue(SLEEP_AND_WRITE, {**payload, "n": 2})
    wait_for(lambda: len(worker.running_jobs()) == 2)
    started = time.monotonic()
    worker.stop(graceful_timeout_s=0.2)
    assert time.monotonic() - started < 15  # did not wait for the 30 s jobs
    jobs = fast_queue.get_many([job.id, waiting.id])
    assert {j.state for j in jobs.values()} == {QUEUED}
    assert {j.attempts for j in jobs.values()} == {0}  # a hand-back is not an attempt
    assert worker.stats().released == 2
    assert fast_queue.transport.pending() == 2  # their messages are back for the next worker
    assert not (tmp_path / "cutouts").exists()


def test_one_heartbeat_thread_keeps_every_running_job_alive(
    database: Database, embedded: Transport, tmp_path: Path
) -> None:
    settings = QueueSettings(**{**FAST, "lease_s": 0.4, "reaper_interval_s": 0.05})
    queue = JobQueue(database=database, transport=embedded, settings=settings)
    worker = Worker(queue=queue, handlers=HANDLERS, concurrency=3)  # beats every 0.1 s
    renewals: list[str] = []

    def on_statement(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        assignments = " ".join(statement.split()).partition(" WHERE ")[0]
        if assignments.startswith("UPDATE jobs SET") and "state=" not in assignments:
            renewals.append(statement)  # only renewals update jobs without changing the state

    event.listen(database.engine, "before_cursor_execute", on_statement)
    worker.start()
    try:
        ids = [
            queue.enqueue(SLEEP_AND_WRITE, {"out": str(tmp_path), "n": n, "sleep_s": 1.2}).id
            for n in range(3)
        ]
        wait_for(lambda: len(worker.running_jobs()) == 3)
        names = [thread.name for thread in threading.enumerate()]
        assert names.count("stolentee-worker-heartbeat") == 1
        assert not [name for name in names if name.startswith("stolentee-heartbeat-")]
        wait_for(lambda: set(states(queue, ids).values()) == {DONE}, timeout_s=15)
    finally:
        worker.stop(graceful_timeout_s=0)
        event.remove(database.engine, "before_cursor_execute", on_statement)
    for stored in queue.get_many(ids).values():
        assert (stored.attempts, stored.lost) == (1, 0)  # three times the lease, never lost
    assert len(read_log(tmp_path)) == 6  # each job started and ended once
    # One UPDATE per beat for all three jobs (a thread per job would need three per beat).
    assert renewals and len(renewals) <= 1.2 / 0.1 + 5


def test_a_handed_back_message_is_on_the_queue_when_stop_returns(
    database: Database, make_transport: TransportFactory, redis_url: str, tmp_path: Path
) -> None:
    """A consumer still blocked in its receive must not take the handed-back message (it
    would put it back, but the process may be gone by then: the job would wait for the
    reaper). Redis: the idle consumer blocks in BRPOP."""
    transport = make_transport(redis_url=redis_url, poll_s=0.3)
    queue = JobQueue(database=database, transport=transport, settings=QueueSettings(**FAST))
    for attempt in range(3):
        worker = Worker(queue=queue, handlers=HANDLERS, concurrency=2, reaper=False)
        worker.start()
        payload = {"out": str(tmp_path), "n": attempt, "sleep_s": 30, "cooperative": True}
        job = queue.enqueue(SLEEP_AND_WRITE, payload)
        wait_for(lambda: worker.running_jobs() == [job.id])  # noqa: B023 - used at once
        worker.stop(graceful_timeout_s=0)
        assert worker.stats().released == 1
        assert transport.pending() == 1, f"attempt {attempt}: the message is not on the queue"
        assert transport.receive(0) == job.id
        stored = queue.get(job.id)
        assert stored is not None and (stored.state, stored.attempts) == (QUEUED, 0)
        with database.session() as session:  # out of the way of the next attempt
            session.execute(update(Job).where(Job.id == job.id).values(state=FAILED))
