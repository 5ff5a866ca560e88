"""Admission control for removals: a bounded number run, a bounded number wait, briefly.

Memory is what a burst exhausts first (a large image is a lot of buffers in flight), so the
API never starts more removals than the engine's slots. Requests beyond those wait up to
``queue_wait_s``; when ``max_waiting`` are already waiting, a new one gets 429 at once, and one
that waited too long gets 429 too (both ``server_busy`` with ``Retry-After``): load is answered
with "retry later", never with a 5xx. A request past its deadline answers 503
``deadline_exceeded`` but keeps its slot until its worker thread really finishes, so the number
of images in memory never exceeds the slots.

The work runs on a pool of exactly ``slots`` threads owned by the gate, not on the server's
general thread pool: with glibc every thread that allocates large buffers may get its own malloc
arena, and spreading removals over dozens of threads held markedly more memory (figures:
benchmarks/decisions.md, "admission of removals").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from stolentee.errors import DeadlineExceededError, ServerBusyError

T = TypeVar("T")


class RemovalGate:
    """Bounded slots plus a bounded, time-limited wait. Create inside the event loop."""

    def __init__(self, *, slots: int, max_waiting: int, wait_s: float, deadline_s: float) -> None:
        self.slots = slots
        self.max_waiting = max_waiting
        self.wait_s = wait_s
        self.deadline_s = deadline_s
        self._semaphore = asyncio.Semaphore(slots)
        self._executor = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="removal")
        self.waiting = 0
        self.running = 0
        self.rejected = 0
        self.timed_out = 0

    async def run(self, work: Callable[[], T]) -> T:
        """Run blocking ``work`` in a thread once a slot is free, within the deadline."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        if self._semaphore.locked() and self.waiting >= self.max_waiting:
            self.rejected += 1
            raise ServerBusyError(
                f"{self.slots} removals running and {self.waiting} waiting; retry shortly",
                headers={"Retry-After": "2"},
            )
        self.waiting += 1
        try:
            await asyncio.wait_for(self._semaphore.acquire(), timeout=self.wait_s)
        except TimeoutError:
            self.timed_out += 1
            raise ServerBusyError(
                f"no removal slot became free within {self.wait_s:g} s",
                headers={"Retry-After": "5"},
            ) from None
        finally:
            self.waiting -= 1
        self.running += 1
        task = loop.run_in_executor(self._executor, work)
        task.add_done_callback(self._release)
        remaining = self.deadline_s - (loop.time() - started)
        try:
            return await asyncio.wait_for(asyncio.shield(task), timeout=max(remaining, 0.001))
        except TimeoutError:
            self.timed_out += 1
            raise DeadlineExceededError(
                f"the removal did not finish within the {self.deadline_s:g} s deadline"
            ) from None

    def close(self) -> None:
        """Let running work finish, then stop the threads."""
        self._executor.shutdown(wait=True)

    def _release(self, task: asyncio.Future[Any]) -> None:
        self.running -= 1
        self._semaphore.release()
        if not task.cancelled():
            task.exception()  # retrieved, so an abandoned task's error is not logged as lost
