"""The circuit breaker, on a clock the tests move by hand."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

from stolentee.removal.providers.breaker import BreakerState, CircuitBreaker


@dataclass
class FakeClock:
    """A monotonic clock (seconds) the test moves by hand."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make(clock: FakeClock, *, threshold: int = 3, cooldown_s: float = 15.0) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=threshold, cooldown_s=cooldown_s, clock=clock)


def test_closed_until_threshold_consecutive_failures(clock: FakeClock) -> None:
    breaker = make(clock)
    breaker.record_failure("boom 1")
    breaker.record_failure("boom 2")
    assert breaker.state is BreakerState.CLOSED and breaker.allow()
    breaker.record_failure("boom 3")
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    snapshot = breaker.snapshot()
    assert snapshot.consecutive_failures == 3
    assert snapshot.last_error == "boom 3"
    assert snapshot.opened_at == clock.now
    assert snapshot.reopens_at == clock.now + 15.0
    assert snapshot.reason is None and not snapshot.forced


def test_success_resets_the_count(clock: FakeClock) -> None:
    breaker = make(clock)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.snapshot().consecutive_failures == 2


def test_half_open_after_cooldown_lets_exactly_one_trial(clock: FakeClock) -> None:
    breaker = make(clock, threshold=1)
    breaker.record_failure()
    clock.advance(14.9)
    assert breaker.state is BreakerState.OPEN and not breaker.allow()
    assert breaker.retry_after_s() == pytest.approx(0.1)
    clock.advance(0.1)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.retry_after_s() == 0
    assert breaker.allow()  # the trial
    assert not breaker.allow()  # one at a time
    assert breaker.snapshot().trial_in_flight


def test_trial_success_closes(clock: FakeClock) -> None:
    breaker = make(clock, threshold=1)
    breaker.record_failure()
    clock.advance(15)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow() and breaker.allow()
    snapshot = breaker.snapshot()
    assert snapshot.consecutive_failures == 0 and snapshot.opened_at is None


def test_trial_failure_reopens_and_restarts_the_cooldown(clock: FakeClock) -> None:
    breaker = make(clock, threshold=1)
    breaker.record_failure()
    clock.advance(20)
    assert breaker.allow()
    breaker.record_failure("still down")
    assert breaker.state is BreakerState.OPEN
    assert breaker.snapshot().opened_at == clock.now
    clock.advance(14)
    assert not breaker.allow()
    clock.advance(1)
    assert breaker.allow()


def test_release_hands_the_trial_back(clock: FakeClock) -> None:
    breaker = make(clock, threshold=1)
    breaker.record_failure()
    clock.advance(15)
    assert breaker.allow()
    breaker.release()
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()


def test_late_success_does_not_close_an_open_breaker(clock: FakeClock) -> None:
    breaker = make(clock, threshold=1)
    breaker.record_failure()
    breaker.record_success()  # a request let through before it opened
    assert breaker.state is BreakerState.OPEN


def test_force_open_holds_for_cooldown_times_factor(clock: FakeClock) -> None:
    breaker = make(clock, threshold=5)
    breaker.force_open("out_of_credits: HTTP 402")
    snapshot = breaker.snapshot()
    assert snapshot.state is BreakerState.OPEN
    assert snapshot.forced and snapshot.reason == "out_of_credits: HTTP 402"
    assert snapshot.reopens_at == clock.now + 15.0 * breaker.forced_open_factor
    clock.advance(15.0 * breaker.forced_open_factor - 1)
    assert not breaker.allow()
    clock.advance(1)
    assert breaker.allow()
    breaker.record_success()
    snapshot = breaker.snapshot()
    assert snapshot.state is BreakerState.CLOSED and snapshot.reason is None
    assert not snapshot.forced


def test_force_open_with_explicit_hold(clock: FakeClock) -> None:
    breaker = make(clock)
    breaker.force_open("maintenance", hold_s=2)
    assert breaker.retry_after_s() == 2
    clock.advance(2)
    assert breaker.state is BreakerState.HALF_OPEN


def test_half_open_early_on_a_good_probe(clock: FakeClock) -> None:
    breaker = make(clock, threshold=1)
    assert not breaker.half_open_early()  # closed: nothing to do
    breaker.force_open("out of credits")
    assert breaker.half_open_early()
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow() and not breaker.allow()


def test_rejects_bad_parameters(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker(failure_threshold=0, cooldown_s=1, clock=clock)
    with pytest.raises(ValueError, match="cooldown_s"):
        CircuitBreaker(failure_threshold=1, cooldown_s=0, clock=clock)


def test_only_one_trial_under_contention(clock: FakeClock) -> None:
    breaker = make(clock, threshold=1)
    breaker.record_failure()
    clock.advance(15)
    start = threading.Barrier(16)
    granted: list[bool] = []
    lock = threading.Lock()

    def contend() -> None:
        start.wait()
        allowed = breaker.allow()
        with lock:
            granted.append(allowed)

    threads = [threading.Thread(target=contend) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert granted.count(True) == 1


def test_snapshot_as_dict(clock: FakeClock) -> None:
    breaker = make(clock, threshold=1)
    breaker.record_failure("x")
    assert breaker.snapshot().as_dict() == {
        "state": "open",
        "consecutive_failures": 1,
        "opened_at": clock.now,
        "reopens_at": clock.now + 15,
        "last_error": "x",
        "reason": None,
        "forced": False,
        "trial_in_flight": False,
    }
