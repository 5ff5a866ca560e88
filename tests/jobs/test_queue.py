"""The jobs table as the source of truth: lease, heartbeat, complete, fail, release, reap.

Every test runs on SQLite and on PostgreSQL with a fake UTC clock; messages go through an
in-memory huey so their number and delays can be checked.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from stolentee.jobs.figures import percentile
from stolentee.jobs.queue import JobQueue
from stolentee.jobs.reaper import Reaper
from stolentee.jobs.states import DONE, FAILED, PROCESSING, QUEUED, backoff_s
from stolentee.jobs.transport import Transport
from tests.fakes.clocks import FakeWallClock

from .conftest import QueueFactory

OWNER = "host:1:abc/0"
OTHER = "host:2:def/0"


def drain(transport: Transport) -> list[str]:
    ids = []
    while (job_id := transport.receive(0)) is not None:
        ids.append(job_id)
    return ids


def test_enqueue_commits_the_row_then_sends_its_id(
    queue: JobQueue, transport: Transport, wall: FakeWallClock
) -> None:
    job = queue.enqueue("design", {"design_id": "d1"})
    assert len(job.id) == 32
    stored = queue.get(job.id)
    assert stored is not None
    assert (stored.kind, stored.payload, stored.state) == ("design", {"design_id": "d1"}, QUEUED)
    assert (stored.attempts, stored.max_attempts, stored.lost) == (0, 3, 0)
    assert stored.created_at == stored.available_at == wall.now
    assert drain(transport) == [job.id]


def test_enqueue_survives_a_transport_failure(
    queue: JobQueue, transport: Transport, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(job_id: str, delay_s: float = 0) -> None:
        raise ConnectionError("redis is down")

    monkeypatch.setattr(transport, "send", broken)
    job = queue.enqueue("design", {})
    monkeypatch.undo()
    stored = queue.get(job.id)
    assert stored is not None and stored.state == QUEUED and stored.sent_at is None
    assert Reaper(queue).reap().resent == 1  # at once: no need to wait for resend_after_s
    assert drain(transport) == [job.id]


def test_lease_is_atomic_and_counts_attempts(
    queue: JobQueue, transport: Transport, wall: FakeWallClock
) -> None:
    job = queue.enqueue("design", {})
    leased = queue.lease(job.id, OWNER)
    assert leased is not None
    assert (leased.state, leased.attempts, leased.lease_owner) == (PROCESSING, 1, OWNER)
    assert leased.started_at == leased.heartbeat_at == wall.now
    assert leased.lease_expires_at is not None
    assert (leased.lease_expires_at - wall.now).total_seconds() == 30
    assert queue.lease(job.id, OTHER) is None  # a duplicate message
    assert queue.lease("0" * 32, OWNER) is None  # an unknown job


def test_concurrent_leases_have_one_winner(queue: JobQueue) -> None:
    job = queue.enqueue("design", {})
    barrier = threading.Barrier(8)
    winners: list[str] = []

    def race(n: int) -> None:
        barrier.wait()
        if queue.lease(job.id, f"w{n}") is not None:
            winners.append(f"w{n}")

    threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
    stored = queue.get(job.id)
    assert stored is not None and stored.attempts == 1 and stored.lease_owner == winners[0]


def test_a_job_is_not_leased_before_it_is_due(queue: JobQueue, wall: FakeWallClock) -> None:
    job = queue.enqueue("design", {}, delay_s=5)
    assert queue.lease(job.id, OWNER) is None
    wall.advance(5)
    assert queue.lease(job.id, OWNER) is not None


def test_heartbeat_extends_the_lease_until_it_is_lost(queue: JobQueue, wall: FakeWallClock) -> None:
    job = queue.enqueue("design", {})
    queue.lease(job.id, OWNER)
    wall.advance(20)
    assert queue.heartbeat(job.id, OWNER)
    wall.advance(20)  # 40 s after the lease: alive only thanks to the heartbeat
    assert queue.lease(job.id, OTHER) is None
    wall.advance(11)  # 31 s after the last beat: expired, another worker may take it
    taken = queue.lease(job.id, OTHER)
    assert taken is not None and taken.attempts == 2 and taken.lost == 1
    assert not queue.heartbeat(job.id, OWNER)
    assert not queue.complete(job.id, OWNER, {"late": True})
    assert queue.complete(job.id, OTHER, {"ok": True})


def test_one_heartbeat_renews_several_leases_and_reports_the_lost_ones(
    queue: JobQueue, wall: FakeWallClock
) -> None:
    first, second, third = (queue.enqueue("design", {}) for _ in range(3))
    queue.lease(first.id, OWNER)
    queue.lease(second.id, OTHER)
    queue.lease(third.id, OWNER)
    assert queue.heartbeat_many([]) == set()
    wall.advance(20)
    held = queue.heartbeat_many(
        [(first.id, OWNER), (second.id, OTHER), (third.id, OTHER), ("no-such-job", OWNER)]
    )
    assert held == {(first.id, OWNER), (second.id, OTHER)}  # third is OWNER's, not OTHER's
    wall.advance(20)  # 40 s after the leases: the two renewed ones are alive, the third is not
    assert Reaper(queue).reap().requeued == 1
    reaped = queue.get(third.id)
    assert reaped is not None and reaped.state == QUEUED
    for job in (first, second):
        stored = queue.get(job.id)
        assert stored is not None and stored.state == PROCESSING
        assert stored.heartbeat_at == wall.now - timedelta(seconds=20)
    assert queue.complete(first.id, OWNER)
    assert queue.heartbeat_many([(first.id, OWNER), (second.id, OTHER)]) == {(second.id, OTHER)}


def test_complete_stores_the_result(queue: JobQueue, wall: FakeWallClock) -> None:
    job = queue.enqueue("design", {})
    queue.lease(job.id, OWNER)
    wall.advance(2.5)
    assert queue.complete(job.id, OWNER, {"sha256": "ab" * 32})
    stored = queue.get(job.id)
    assert stored is not None
    assert (stored.state, stored.result, stored.error) == (DONE, {"sha256": "ab" * 32}, None)
    assert stored.finished_at == wall.now and stored.lease_expires_at is None
    assert not queue.complete(job.id, OWNER, {})  # once
    assert queue.lease(job.id, OWNER) is None


def test_fail_retries_with_exponential_backoff_then_gives_up(
    queue: JobQueue, transport: Transport, wall: FakeWallClock
) -> None:
    job = queue.enqueue("design", {})
    drain(transport)
    for attempt, backoff in ((1, 10.0), (2, 20.0)):
        assert backoff_s(queue.settings, attempt) == backoff
        assert queue.lease(job.id, OWNER) is not None
        left = queue.fail(job.id, OWNER, "RuntimeError: boom")
        assert left is not None and left.state == QUEUED and left.attempts == attempt
        assert (left.available_at - wall.now).total_seconds() == backoff
        assert left.error == "RuntimeError: boom"
        # The retry message is delayed until the job is due.
        assert transport.pending() == 0 and transport.scheduled() == 1
        transport.flush()
        assert queue.lease(job.id, OWNER) is None  # not due yet
        wall.advance(backoff)
    assert queue.lease(job.id, OWNER) is not None
    left = queue.fail(job.id, OWNER, "RuntimeError: boom")
    assert left is not None and left.state == FAILED and left.attempts == 3
    assert left.error == "RuntimeError: boom (gave up after 3 attempts)"
    assert left.finished_at == wall.now
    assert transport.scheduled() == 0
    wall.advance(3600)
    assert queue.lease(job.id, OWNER) is None


def test_a_permanent_failure_is_not_retried(queue: JobQueue) -> None:
    job = queue.enqueue("design", {})
    queue.lease(job.id, OWNER)
    left = queue.fail(job.id, OWNER, "PermanentJobError: not an image", retryable=False)
    assert left is not None and (left.state, left.attempts) == (FAILED, 1)
    assert left.error == "PermanentJobError: not an image"


def test_fail_after_losing_the_lease_changes_nothing(queue: JobQueue, wall: FakeWallClock) -> None:
    job = queue.enqueue("design", {})
    queue.lease(job.id, OWNER)
    wall.advance(31)
    queue.lease(job.id, OTHER)
    assert queue.fail(job.id, OWNER, "too late") is None
    stored = queue.get(job.id)
    assert stored is not None and stored.lease_owner == OTHER and stored.error is None


def test_release_hands_back_without_counting_an_attempt(
    queue: JobQueue, transport: Transport, wall: FakeWallClock
) -> None:
    job = queue.enqueue("design", {})
    drain(transport)
    queue.lease(job.id, OWNER)
    assert queue.release(job.id, OWNER)
    stored = queue.get(job.id)
    assert stored is not None
    assert (stored.state, stored.attempts, stored.lease_owner) == (QUEUED, 0, None)
    assert drain(transport) == [job.id]
    assert not queue.release(job.id, OWNER)
    assert queue.lease(job.id, OTHER) is not None


def test_reap_requeues_expired_leases_then_fails_a_job_that_keeps_losing_workers(
    make_queue: QueueFactory, transport: Transport, wall: FakeWallClock
) -> None:
    queue = make_queue(max_attempts=2)
    job = queue.enqueue("design", {})
    healthy = queue.enqueue("design", {})
    drain(transport)
    queue.lease(job.id, OWNER)
    queue.lease(healthy.id, OTHER)
    wall.advance(29)
    queue.heartbeat(healthy.id, OTHER)
    assert not Reaper(queue).reap()  # nothing expired yet
    wall.advance(2)
    report = Reaper(queue).reap()
    assert (report.requeued, report.failed) == (1, 0)
    stored = queue.get(job.id)
    assert stored is not None
    assert (stored.state, stored.attempts, stored.lost) == (QUEUED, 1, 1)
    assert stored.error is not None and "worker lost" in stored.error
    assert queue.get(healthy.id).state == PROCESSING  # type: ignore[union-attr]
    # Retried after the backoff, like a failure: a job that kills workers does not take
    # them all down at once.
    assert (stored.available_at - wall.now).total_seconds() == 10
    assert (transport.pending(), transport.scheduled()) == (0, 1)
    assert queue.lease(job.id, OWNER) is None
    wall.advance(10)

    queue.lease(job.id, OWNER)
    wall.advance(31)
    report = Reaper(queue).reap()
    assert report.failed == 1  # second loss, attempts used up
    stored = queue.get(job.id)
    assert stored is not None and stored.state == FAILED and stored.lost == 2
    assert stored.error is not None and stored.error.startswith("worker lost 2 times")
    assert "gave up after 2 attempts" in stored.error


def test_an_expired_lease_at_the_limit_is_not_leased_again(
    make_queue: QueueFactory, wall: FakeWallClock
) -> None:
    queue = make_queue(max_attempts=1)
    job = queue.enqueue("design", {})
    queue.lease(job.id, OWNER)
    wall.advance(31)
    assert queue.lease(job.id, OTHER) is None  # the reaper fails it instead
    assert Reaper(queue).reap().failed == 1


def test_reap_resends_messages_lost_by_the_transport(
    make_queue: QueueFactory, transport: Transport, wall: FakeWallClock
) -> None:
    queue = make_queue(resend_after_s=60, lease_s=3600)
    jobs = [queue.enqueue("design", {"n": n}) for n in range(3)]
    later = queue.enqueue("design", {}, delay_s=600)
    transport.flush()  # Redis restarted empty
    queue.lease(jobs[0].id, OWNER)
    wall.advance(59)
    assert Reaper(queue).reap().resent == 0
    wall.advance(1)
    assert Reaper(queue).reap().resent == 2
    assert sorted(drain(transport)) == sorted(j.id for j in jobs[1:])
    assert Reaper(queue).reap().resent == 0  # not again until another resend_after_s
    wall.advance(60)
    assert Reaper(queue).reap().resent == 2  # still unleased: sent again (duplicates are harmless)
    drain(transport)
    wall.advance(600)
    assert Reaper(queue).reap().resent == 3  # the delayed job too, once due (its message was lost)
    assert sorted(drain(transport)) == sorted([later.id, *(j.id for j in jobs[1:])])


def test_two_reapers_do_not_both_resend(
    make_queue: QueueFactory, transport: Transport, wall: FakeWallClock
) -> None:
    first, second = make_queue(resend_after_s=10), make_queue(resend_after_s=10)
    queue_jobs = [first.enqueue("design", {}) for _ in range(5)]
    transport.flush()
    wall.advance(10)
    results: list[int] = []
    barrier = threading.Barrier(2)

    def reap(queue: JobQueue) -> None:
        barrier.wait()
        results.append(Reaper(queue).reap().resent)

    threads = [threading.Thread(target=reap, args=(q,)) for q in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(results) == len(queue_jobs)
    assert transport.pending() == len(queue_jobs)


def test_resend_if_early_delays_the_message(queue: JobQueue, transport: Transport) -> None:
    job = queue.enqueue("design", {}, delay_s=30)
    transport.flush()
    assert Reaper(queue).resend_if_early(job.id)
    assert transport.scheduled() == 1
    stored = queue.get(job.id)
    assert stored is not None and stored.state == QUEUED


def test_figures(queue: JobQueue, wall: FakeWallClock) -> None:
    empty = queue.figures()
    assert (empty.depth, empty.in_flight, empty.oldest_queued_age_s) == (0, 0, 0.0)
    assert empty.processing_p50_s is None
    durations = [1.0, 2.0, 3.0, 4.0, 10.0]
    for seconds in durations:
        job = queue.enqueue("design", {})
        queue.lease(job.id, OWNER)
        wall.advance(seconds)
        queue.complete(job.id, OWNER, {})
    broken = queue.enqueue("design", {})
    queue.lease(broken.id, OWNER)
    queue.fail(broken.id, OWNER, "bad", retryable=False)
    waiting = queue.enqueue("design", {})
    wall.advance(7)
    queue.enqueue("design", {})
    queue.enqueue("design", {}, delay_s=100)
    running = queue.enqueue("design", {})
    queue.lease(running.id, OWNER)
    figures = queue.figures()
    assert figures.depth == 3 and figures.ready == 2
    assert figures.in_flight == 1
    assert figures.oldest_queued_age_s == pytest.approx(7.0)
    assert (figures.done_total, figures.failed_total) == (5, 1)
    assert figures.processing_p50_s == pytest.approx(3.0)
    assert figures.processing_p95_s == pytest.approx(10.0)
    assert figures.processing_sample == 5
    body = figures.as_dict()
    assert body["depth"] == 3 and body["inFlight"] == 1 and body["processingP95S"] == 10.0
    assert waiting.id


def test_percentile_is_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.95) == 95.0
    assert percentile([7.0], 0.95) == 7.0


def test_clock_must_be_aware(make_queue: QueueFactory, wall: FakeWallClock) -> None:
    queue = make_queue()
    queue.clock = lambda: datetime(2026, 1, 1)
    with pytest.raises(ValueError, match="aware"):
        queue.enqueue("design", {})
    queue.clock = lambda: datetime(2026, 1, 1, tzinfo=UTC)
    assert queue.enqueue("design", {}).state == QUEUED
