"""Application-level query timeout: one watchdog thread cancels statements that run too long.

The seed sets two limits: PostgreSQL's own ``statement_timeout`` (30 s, enforced by the server)
and an application-level ``query_timeout`` (10 s) after which the *client* gives up. The
watchdog implements the second for every driver: before a statement runs it registers a deadline
with a cancel callback (psycopg's ``cancel_safe``/``cancel``, sqlite3's ``interrupt``); after the
statement it unregisters. A single thread and a heap serve all connections of a process.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass(order=True, slots=True)
class Deadline:
    """A registered statement; ``fired`` tells whether the watchdog cancelled it."""

    at: float
    seq: int
    cancel: Callable[[], None] = field(compare=False)
    done: bool = field(default=False, compare=False)
    fired: bool = field(default=False, compare=False)
    lock: threading.Lock = field(default_factory=threading.Lock, compare=False)


class QueryWatchdog:
    """Cancels registered statements whose deadline passed. Thread-safe; start lazily."""

    def __init__(self, *, timeout_s: float, name: str = "stolentee-query-watchdog") -> None:
        self.timeout_s = timeout_s
        self._heap: list[Deadline] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._name = name
        self.cancelled = 0

    def register(self, cancel: Callable[[], None]) -> Deadline:
        deadline = Deadline(time.monotonic() + self.timeout_s, next(self._seq), cancel)
        with self._cond:
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, deadline)
            if self._heap[0] is deadline:
                self._cond.notify()
        return deadline

    def finish(self, deadline: Deadline) -> None:
        """Mark the statement done; it is dropped from the heap when it surfaces.

        Waits for a cancel already under way for this statement, so that a late cancel can
        never hit the connection's next statement.
        """
        with deadline.lock:
            deadline.done = True

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopping:
                        return
                    while self._heap and self._heap[0].done:
                        heapq.heappop(self._heap)
                    if not self._heap:
                        self._cond.wait()
                        continue
                    wait_s = self._heap[0].at - time.monotonic()
                    if wait_s <= 0:
                        due = heapq.heappop(self._heap)
                        break
                    self._cond.wait(wait_s)
            with due.lock:
                if due.done:
                    continue
                due.fired = True
                self.cancelled += 1
                log.warning(
                    "query ran past the %.1f s query timeout; cancelling it", self.timeout_s
                )
                try:
                    due.cancel()
                except Exception:  # the connection may be gone already; then the statement is too
                    log.exception("cancelling a timed-out query failed")
