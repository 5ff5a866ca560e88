"""The removal gate: bounded slots, bounded waiting, deadlines that keep memory bounded."""

from __future__ import annotations

import asyncio
import threading

import pytest

from stolentee.api.admission import RemovalGate
from stolentee.errors import DeadlineExceededError, ServerBusyError


def blocking(release: threading.Event, seen: list[int], gate: RemovalGate) -> int:
    seen.append(gate.running)
    release.wait(timeout=10)
    return 7


def test_excess_requests_are_refused_at_once_then_served() -> None:
    async def scenario() -> None:
        gate = RemovalGate(slots=1, max_waiting=1, wait_s=5, deadline_s=10)
        release = threading.Event()
        seen: list[int] = []
        first = asyncio.create_task(gate.run(lambda: blocking(release, seen, gate)))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(gate.run(lambda: 8))
        await asyncio.sleep(0.05)
        assert (gate.running, gate.waiting) == (1, 1)
        with pytest.raises(ServerBusyError) as refused:
            await gate.run(lambda: 9)
        assert refused.value.headers["Retry-After"] == "2"
        release.set()
        assert await first == 7
        assert await second == 8
        assert seen == [1]
        assert (gate.running, gate.waiting, gate.rejected) == (0, 0, 1)

    asyncio.run(scenario())


def test_waiting_too_long_is_429_with_retry_after() -> None:
    async def scenario() -> None:
        gate = RemovalGate(slots=1, max_waiting=4, wait_s=0.1, deadline_s=10)
        release = threading.Event()
        holder = asyncio.create_task(gate.run(lambda: blocking(release, [], gate)))
        await asyncio.sleep(0.05)
        with pytest.raises(ServerBusyError, match="no removal slot") as busy:
            await gate.run(lambda: 1)
        assert busy.value.status_code == 429 and busy.value.headers["Retry-After"] == "5"
        release.set()
        await holder

    asyncio.run(scenario())


def test_deadline_answers_503_but_keeps_the_slot_until_the_work_ends() -> None:
    async def scenario() -> None:
        gate = RemovalGate(slots=1, max_waiting=4, wait_s=5, deadline_s=0.1)
        release = threading.Event()
        with pytest.raises(DeadlineExceededError, match="deadline"):
            await gate.run(lambda: blocking(release, [], gate))
        assert gate.running == 1  # the thread still holds its image in memory
        release.set()
        for _ in range(100):
            if gate.running == 0:
                break
            await asyncio.sleep(0.02)
        assert gate.running == 0
        assert await gate.run(lambda: 3) == 3

    asyncio.run(scenario())
