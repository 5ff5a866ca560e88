"""Faults under uploads, with real processes and private servers (issue 23, items 3-4).

An API process (``serve --no-worker``) and a ``stolentee worker`` share a private PostgreSQL,
a private Redis and a data directory; a client uploads designs while one fault strikes:

* PostgreSQL restarted immediately (clients cut off, one second down);
* Redis killed and restarted empty (every queued message lost);
* the worker SIGKILLed mid-work and started again.

Every accepted upload must end ``done`` (0 lost, 0 failed, 0 stuck), within a bound far below
the lease (``STOLENTEE_JOB_LEASE_S`` is set to 10 minutes here, so nothing may wait for a lease
to expire except the killed worker's own jobs, whose lease is the point of that scenario). The
upload-to-done times are returned for ``benchmarks/recovery.py``, which reports them.
"""

from __future__ import annotations

import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.processes import STOLENTEE, StolenteeProcess, clean_environment
from tests.fakes.servers import (
    PrivatePostgres,
    PrivateRedis,
    postgres_unavailable,
    redis_unavailable,
)

from ..removal.conftest import composite, draw_logo, encode

KEY = "st_faults_key"
HEADERS = {"X-Api-Key": KEY}
LOGO = encode(composite(draw_logo(), (255, 255, 255)))
UPLOAD_EVERY_S = 0.1
RECOVERY_BOUND_S = 60.0  # all accepted work done this long after the fault, at the most

_MISSING = postgres_unavailable() or redis_unavailable()
pytestmark = pytest.mark.skipif(_MISSING is not None, reason=f"private servers: {_MISSING}")


@dataclass
class Figures:
    fault: str
    accepted: int
    refused: int  # uploads answered other than 202 while the fault lasted (retried by shops)
    done: int
    failed: int
    p50_s: float
    p90_s: float
    max_s: float


@dataclass
class Stack:
    postgres: PrivatePostgres
    redis: PrivateRedis
    api: StolenteeProcess
    worker: StolenteeProcess


def _env(
    stack_dir: Path, postgres: PrivatePostgres, redis: PrivateRedis, lease_s: float
) -> dict[str, str]:
    return {
        "DATABASE_URL": postgres.url,
        "REDIS_URL": redis.url,
        "STOLENTEE_DATA_DIR": str(stack_dir / "data"),
        "STOLENTEE_API_KEYS": KEY,
        "STOLENTEE_RUN_WORKER": "false",
        "STOLENTEE_JOB_LEASE_S": str(lease_s),
        "STOLENTEE_JOB_HEARTBEAT_S": "1",
        "STOLENTEE_JOB_RETRY_BACKOFF_S": "0.5",
        "STOLENTEE_JOB_STALL_BACKOFF_MAX_S": "2",
    }


def build_stack(directory: Path, *, lease_s: float = 600.0) -> Stack:
    """Private PostgreSQL and Redis, the schema, an API process and a worker, all started."""
    postgres = PrivatePostgres().start()
    redis = PrivateRedis(directory / "redis").start()
    env = _env(directory, postgres, redis, lease_s)
    subprocess.run(  # our own command line
        [STOLENTEE, "db", "upgrade"], env={**clean_environment(), **env}, check=True,
        capture_output=True,
    )  # fmt: skip
    api = StolenteeProcess(["serve", "--no-worker"], env, directory / "api.log")
    worker = StolenteeProcess(
        ["worker", "--concurrency", "2"], env, directory / "worker.log", ready_line="started:"
    )
    stack = Stack(postgres, redis, api, worker)
    try:
        api.start()
        worker.start()
    except BaseException:
        tear_down(stack)
        raise
    return stack


def tear_down(stack: Stack) -> None:
    for process in (stack.worker, stack.api):
        process.stop()
    stack.redis.stop()
    stack.postgres.remove()


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    built: list[Stack] = []

    def factory(*, lease_s: float = 600.0) -> Stack:
        stack = build_stack(tmp_path, lease_s=lease_s)
        built.append(stack)
        return stack

    yield factory
    for stack in built:
        tear_down(stack)


def run_under_fault(
    stack: Stack, fault: str, strike: Callable[[], None], *, upload_s: float = 6.0
) -> Figures:
    """Upload for ``upload_s`` seconds, strike the fault after a third of it, then wait for
    every accepted design to finish; the figures of that run."""
    accepted: list[str] = []
    refused = 0
    stop = threading.Event()

    def uploader() -> None:
        nonlocal refused
        with httpx.Client(base_url=stack.api.url, timeout=30) as client:
            while not stop.is_set():
                try:
                    answer = client.post(
                        "/v1/designs", files={"file": ("logo.png", LOGO)}, headers=HEADERS
                    )
                except httpx.TransportError:
                    refused += 1
                else:
                    if answer.status_code == 202:
                        accepted.append(answer.json()["id"])
                    else:
                        refused += 1
                stop.wait(UPLOAD_EVERY_S)

    thread = threading.Thread(target=uploader, daemon=True)
    thread.start()
    time.sleep(upload_s / 3)
    strike()
    struck_at = time.monotonic()
    time.sleep(upload_s * 2 / 3)
    stop.set()
    thread.join(timeout=60)
    designs = _wait_finished(stack, accepted, deadline=struck_at + RECOVERY_BOUND_S)
    durations = sorted(
        (_time(body["updated_at"]) - _time(body["created_at"])) for body in designs.values()
    )
    statuses = [body["status"] for body in designs.values()]
    return Figures(
        fault=fault,
        accepted=len(accepted),
        refused=refused,
        done=statuses.count("done"),
        failed=statuses.count("failed"),
        p50_s=statistics.median(durations),
        p90_s=durations[max(0, int(len(durations) * 0.9 + 0.5) - 1)],
        max_s=durations[-1],
    )


def _time(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def _wait_finished(stack: Stack, ids: list[str], *, deadline: float) -> dict[str, dict[str, Any]]:
    bodies: dict[str, dict[str, Any]] = {}
    with httpx.Client(base_url=stack.api.url, timeout=30) as client:
        while True:
            for design_id in ids:
                if bodies.get(design_id, {}).get("status") in ("done", "failed"):
                    continue
                try:
                    bodies[design_id] = client.get(
                        f"/v1/designs/{design_id}", headers=HEADERS
                    ).json()
                except (httpx.TransportError, ValueError):
                    continue
            pending = [i for i in ids if bodies.get(i, {}).get("status") not in ("done", "failed")]
            if not pending:
                return bodies
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(pending)} of {len(ids)} designs still unfinished "
                    f"{RECOVERY_BOUND_S:g} s after the fault: "
                    f"{[bodies.get(i, i) for i in pending[:3]]}\n"
                    f"worker log:\n{stack.worker.log_tail()}"
                )
            time.sleep(0.2)


def _check(figures: Figures) -> None:
    print(figures)
    assert figures.accepted > 10
    assert (figures.done, figures.failed) == (figures.accepted, 0)


def postgres_restart(stack: Stack) -> Figures:
    return run_under_fault(stack, "postgres-restart", lambda: stack.postgres.restart_immediate(1.0))


def redis_empty_restart(stack: Stack) -> Figures:
    def strike() -> None:
        stack.redis.kill()
        stack.redis.start()

    return run_under_fault(stack, "redis-empty-restart", strike)


def worker_sigkill(stack: Stack) -> Figures:
    def strike() -> None:
        stack.worker.kill()
        stack.worker.start()

    return run_under_fault(stack, "worker-sigkill", strike)


def test_a_postgres_restart_loses_nothing_and_recovers_at_once(
    make_stack: Callable[..., Stack],
) -> None:
    _check(postgres_restart(make_stack()))


def test_an_empty_redis_restart_loses_nothing_and_recovers_at_once(
    make_stack: Callable[..., Stack],
) -> None:
    _check(redis_empty_restart(make_stack()))


def test_a_killed_worker_loses_nothing(make_stack: Callable[..., Stack]) -> None:
    # Its own running jobs come back when their lease expires: a short lease here.
    _check(worker_sigkill(make_stack(lease_s=6.0)))
