"""A circuit breaker per removal provider, so a dead provider costs no latency.

States (the classic three):

* **closed**: requests go through; ``failure_threshold`` consecutive failures open it.
* **open**: requests are refused at once (:meth:`CircuitBreaker.allow` is ``False``) until the
  cooldown has passed; then it is half-open.
* **half-open**: exactly one trial request at a time is let through. Its success closes the
  breaker, its failure opens it again and restarts the cooldown. A trial that ends without a
  verdict (the provider rejected the *input*, which says nothing about its health) hands the
  trial back with :meth:`CircuitBreaker.release`.

:meth:`CircuitBreaker.force_open` opens it for a reason the provider will not recover from by
itself soon, such as Remove.bg answering 402 (out of credits) or refusing our API key: it stays
open for ``cooldown_s * forced_open_factor`` (default 20: five minutes with the default 15 s
cooldown), or until a health probe reports the provider usable again and the chain calls
:meth:`CircuitBreaker.half_open_early`. A trial request against an account without credits is
free (Remove.bg charges nothing for a 402), so the factor only bounds how often we ask.

Time comes from ``clock`` (``time.monotonic`` by default; tests pass a fake). Every method is
thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

FORCED_OPEN_FACTOR = 20.0


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """The breaker at one instant (times in the breaker's clock, seconds)."""

    state: BreakerState
    consecutive_failures: int
    opened_at: float | None  # when it last opened; None when closed
    reopens_at: float | None  # when an open breaker becomes half-open; None unless open
    last_error: str | None
    reason: str | None  # why it was forced open; None when it opened on failures or is closed
    forced: bool
    trial_in_flight: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "consecutive_failures": self.consecutive_failures,
            "opened_at": self.opened_at,
            "reopens_at": self.reopens_at,
            "last_error": self.last_error,
            "reason": self.reason,
            "forced": self.forced,
            "trial_in_flight": self.trial_in_flight,
        }


class CircuitBreaker:
    """Closed → open after ``failure_threshold`` consecutive failures → half-open after
    ``cooldown_s`` (one trial at a time) → closed on success, open again on failure."""

    def __init__(
        self,
        *,
        failure_threshold: int,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
        forced_open_factor: float = FORCED_OPEN_FACTOR,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if cooldown_s <= 0:
            raise ValueError("cooldown_s must be positive")
        if forced_open_factor < 1:
            raise ValueError("forced_open_factor must be at least 1")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self.forced_open_factor = forced_open_factor
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at: float | None = None
        self._reopens_at: float | None = None
        self._last_error: str | None = None
        self._reason: str | None = None
        self._forced = False
        self._trial_in_flight = False

    # --- queries ------------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._current_state()

    def allow(self) -> bool:
        """May a request go to the provider now? In half-open, ``True`` for one caller at a time
        (that caller must then report a verdict or :meth:`release`)."""
        with self._lock:
            state = self._current_state()
            if state is BreakerState.CLOSED:
                return True
            if state is BreakerState.OPEN or self._trial_in_flight:
                return False
            self._trial_in_flight = True
            return True

    def retry_after_s(self) -> float:
        """Seconds until a request may be let through: 0 unless open."""
        with self._lock:
            if self._current_state() is not BreakerState.OPEN:
                return 0.0
            assert self._reopens_at is not None
            return max(0.0, self._reopens_at - self._clock())

    def snapshot(self) -> BreakerSnapshot:
        with self._lock:
            state = self._current_state()
            return BreakerSnapshot(
                state=state,
                consecutive_failures=self._failures,
                opened_at=self._opened_at,
                reopens_at=self._reopens_at if state is BreakerState.OPEN else None,
                last_error=self._last_error,
                reason=self._reason,
                forced=self._forced,
                trial_in_flight=self._trial_in_flight,
            )

    # --- verdicts -----------------------------------------------------------------------------

    def record_success(self) -> None:
        """The provider served a request: close (from half-open), reset the failure count.

        A success reported while open (a request let through before the breaker opened) is
        not enough evidence to close it: the breaker waits for its own trial."""
        with self._lock:
            if self._current_state() is BreakerState.OPEN:
                return
            self._close()

    def record_failure(self, error: str | None = None) -> None:
        """The provider failed a request: count it; open at the threshold or from half-open."""
        with self._lock:
            state = self._current_state()
            self._failures += 1
            if error is not None:
                self._last_error = error
            if state is BreakerState.HALF_OPEN:
                self._trial_in_flight = False
                self._open(self.cooldown_s, forced=self._forced)
            elif state is BreakerState.CLOSED and self._failures >= self.failure_threshold:
                self._open(self.cooldown_s, forced=False)

    def release(self) -> None:
        """The request ended without a verdict on the provider: hand back a half-open trial."""
        with self._lock:
            self._trial_in_flight = False

    def force_open(self, reason: str, *, hold_s: float | None = None) -> None:
        """Open now, for ``hold_s`` (default ``cooldown_s * forced_open_factor``)."""
        with self._lock:
            self._failures += 1
            self._last_error = reason
            self._reason = reason
            self._trial_in_flight = False
            self._open(
                hold_s if hold_s is not None else self.cooldown_s * self.forced_open_factor,
                forced=True,
            )

    def half_open_early(self) -> bool:
        """A health probe says the provider is back: let one trial through now instead of
        waiting out the cooldown. ``True`` when the breaker was open."""
        with self._lock:
            if self._current_state() is not BreakerState.OPEN:
                return False
            self._state = BreakerState.HALF_OPEN
            self._reopens_at = None
            self._trial_in_flight = False
            return True

    # --- internals (lock held) ----------------------------------------------------------------

    def _current_state(self) -> BreakerState:
        if (
            self._state is BreakerState.OPEN
            and self._reopens_at is not None
            and self._clock() >= self._reopens_at
        ):
            self._state = BreakerState.HALF_OPEN
            self._trial_in_flight = False
        return self._state

    def _open(self, hold_s: float, *, forced: bool) -> None:
        now = self._clock()
        self._state = BreakerState.OPEN
        self._opened_at = now
        self._reopens_at = now + hold_s
        self._forced = forced
        if not forced:
            self._reason = None

    def _close(self) -> None:
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = None
        self._reopens_at = None
        self._reason = None
        self._forced = False
        self._trial_in_flight = False
