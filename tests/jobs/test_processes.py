"""Worker processes against real servers: Redis + PostgreSQL, and SQLite on the embedded default.

Each test starts ``python -m tests.jobs.worker_main`` processes configured through the
environment like ``stolentee worker``, with leases and intervals shortened so that recovery
takes a second or two. The ``sleep-and-write`` handler writes content-addressed files and logs
every start and end, so "exactly once as seen by the outputs" is checked on the files.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from stolentee.config import Settings
from stolentee.db import migrate
from stolentee.db.engine import Database
from stolentee.jobs.queue import JobQueue
from stolentee.jobs.states import DONE, FAILED, QUEUED
from stolentee.jobs.transport import Transport, build_transport

from ..conftest import SettingsFactory
from .handlers import EXPLODE, SLEEP_AND_WRITE, content_for, read_log

REPO_ROOT = Path(__file__).resolve().parents[2]

QUEUE = {
    "lease_s": 1.5,
    "heartbeat_s": 0.3,
    "max_attempts": 3,
    "retry_backoff_s": 0.1,
    "reaper_interval_s": 0.3,
    "worker_concurrency": 2,
}
RESEND_AFTER_S = 1.0


@dataclass
class Cluster:
    """The test's own view of the queue plus the worker processes it started."""

    queue: JobQueue
    transport: Transport
    env: dict[str, str]
    out: Path
    logs: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_worker(self, *args: str, concurrency: int | None = None) -> subprocess.Popen[bytes]:
        env = dict(self.env)
        if concurrency is not None:
            env["STOLENTEE_WORKER_CONCURRENCY"] = str(concurrency)
        log = (self.logs / f"worker-{len(self.workers)}.log").open("wb")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.jobs.worker_main",
                "--resend-after-s",
                str(RESEND_AFTER_S),
                *args,
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.workers.append(proc)
        return proc

    def enqueue(self, kind: str = SLEEP_AND_WRITE, **payload: Any) -> str:
        return self.queue.enqueue(kind, {"out": str(self.out), **payload}).id

    def states(self, ids: list[str]) -> Counter[str]:
        return Counter(job.state for job in self.queue.get_many(ids).values())

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not reached in time\n{self.worker_logs()}")
            for proc in self.workers:
                if proc.poll() not in (None, -signal.SIGKILL, 0):
                    raise AssertionError(
                        f"a worker exited with {proc.returncode}\n{self.worker_logs()}"
                    )
            time.sleep(0.05)

    def wait_started(self, job_id: str, timeout_s: float = 15.0) -> int:
        """The pid of the first process that started the job."""
        self.wait_for(
            lambda: any(e == "start" and j == job_id for e, j, _ in read_log(self.out)), timeout_s
        )
        return next(p for e, j, p in read_log(self.out) if e == "start" and j == job_id)

    def worker_logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text()[-3000:]}" for path in sorted(self.logs.iterdir())
        )

    def cutouts(self) -> list[Path]:
        folder = self.out / "cutouts"
        return sorted(folder.iterdir()) if folder.exists() else []

    def stop_all(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


@pytest.fixture(params=["redis+postgresql", "sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    param: str = request.param
    return param


@pytest.fixture
def cluster(
    backend: str,
    request: pytest.FixtureRequest,
    make_settings: SettingsFactory,
    tmp_path: Path,
) -> Iterator[Cluster]:
    data_dir = tmp_path / "data"
    if backend == "sqlite":
        database_url = f"sqlite:///{(tmp_path / 'jobs.db').as_posix()}"
        redis_url = ""
    else:
        database_url = request.getfixturevalue("pg_schema_url")
        redis_url = request.getfixturevalue("redis_url")
    settings: Settings = make_settings(
        service={"data_dir": data_dir},
        database={"url": database_url},
        queue={**QUEUE, "redis_url": redis_url},
    )
    database = Database(settings=settings.database)
    migrate.upgrade(database)
    transport = build_transport(settings)
    queue = JobQueue(database=database, transport=transport, settings=settings.queue)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "PYTHONPATH": str(REPO_ROOT),
        "STOLENTEE_DATA_DIR": str(data_dir),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "STOLENTEE_JOB_LEASE_S": str(QUEUE["lease_s"]),
        "STOLENTEE_JOB_HEARTBEAT_S": str(QUEUE["heartbeat_s"]),
        "STOLENTEE_JOB_MAX_ATTEMPTS": str(QUEUE["max_attempts"]),
        "STOLENTEE_JOB_RETRY_BACKOFF_S": str(QUEUE["retry_backoff_s"]),
        "STOLENTEE_JOB_REAPER_INTERVAL_S": str(QUEUE["reaper_interval_s"]),
        "STOLENTEE_WORKER_CONCURRENCY": str(QUEUE["worker_concurrency"]),
    }
    out = tmp_path / "out"
    logs = tmp_path / "logs"
    out.mkdir()
    logs.mkdir()
    running = Cluster(queue=queue, transport=transport, env=env, out=out, logs=logs)
    try:
        yield running
    finally:
        running.stop_all()
        transport.close()
        database.dispose()


def ends_per_job(out: Path) -> Counter[str]:
    return Counter(job_id for event, job_id, _ in read_log(out) if event == "end")


def test_200_jobs_through_two_worker_processes_run_exactly_once(cluster: Cluster) -> None:
    cluster.start_worker()
    cluster.start_worker()
    ids = [cluster.enqueue(n=n, sleep_s=0.005) for n in range(200)]
    cluster.wait_for(lambda: cluster.states(ids) == Counter({DONE: 200}), timeout_s=60)

    log = read_log(cluster.out)
    assert Counter(job_id for event, job_id, _ in log if event == "start") == Counter(ids)
    assert ends_per_job(cluster.out) == Counter(ids)  # every job ran once, none lost
    assert len({pid for _, _, pid in log}) == 2  # both processes served
    assert len(cluster.cutouts()) == 200
    jobs = cluster.queue.get_many(ids)
    assert {job.attempts for job in jobs.values()} == {1}
    figures = cluster.queue.figures()
    assert (figures.depth, figures.in_flight, figures.done_total) == (0, 0, 200)


def test_a_worker_killed_mid_job_leaves_it_to_another_after_the_lease(cluster: Cluster) -> None:
    doomed = cluster.start_worker(concurrency=1)
    job_id = cluster.enqueue(n=1, sleep_s=1.0)
    assert cluster.wait_started(job_id) == doomed.pid
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(10)
    assert cluster.states([job_id]) == Counter({"processing": 1})

    rescuer = cluster.start_worker()
    cluster.wait_for(lambda: cluster.states([job_id]) == Counter({DONE: 1}))
    job = cluster.queue.get(job_id)
    assert job is not None and (job.attempts, job.lost) == (2, 1)
    starts = [pid for event, j, pid in read_log(cluster.out) if event == "start" and j == job_id]
    assert starts == [doomed.pid, rescuer.pid]
    assert ends_per_job(cluster.out) == Counter({job_id: 1})
    assert len(cluster.cutouts()) == 1  # no duplicate asset


@pytest.mark.parametrize("backend", ["redis+postgresql"], indirect=True)
def test_a_job_that_always_raises_fails_while_the_worker_serves_others(cluster: Cluster) -> None:
    cluster.start_worker()
    bad = cluster.enqueue(EXPLODE, n=13)
    good = [cluster.enqueue(n=n, sleep_s=0.05) for n in range(10)]
    cluster.wait_for(lambda: cluster.states([bad, *good]) == Counter({DONE: 10, FAILED: 1}))
    job = cluster.queue.get(bad)
    assert job is not None and job.attempts == 3
    assert job.error == "RuntimeError: boom 13 (gave up after 3 attempts)"
    assert ends_per_job(cluster.out) == Counter(good)
    later = cluster.enqueue(n=99)  # still serving
    cluster.wait_for(lambda: cluster.states([later]) == Counter({DONE: 1}))


@pytest.mark.parametrize("backend", ["redis+postgresql"], indirect=True)
def test_no_job_is_lost_when_redis_comes_back_empty(cluster: Cluster, redis_url: str) -> None:
    cluster.start_worker(concurrency=1)
    ids = [cluster.enqueue(n=n, sleep_s=0.05) for n in range(30)]
    cluster.wait_for(lambda: cluster.states(ids)[DONE] >= 3)
    redis.Redis.from_url(redis_url).flushdb()  # a restarted Redis that kept nothing
    assert cluster.states(ids)[DONE] < 30
    cluster.wait_for(lambda: cluster.states(ids) == Counter({DONE: 30}))
    assert ends_per_job(cluster.out) == Counter(ids)
    assert len(cluster.cutouts()) == 30


@pytest.mark.parametrize("backend", ["redis+postgresql"], indirect=True)
def test_sigterm_lets_the_running_job_finish(cluster: Cluster) -> None:
    worker = cluster.start_worker("--graceful-timeout-s", "10")
    job_id = cluster.enqueue(n=1, sleep_s=1.0)
    cluster.wait_started(job_id)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(10) == 0
    assert cluster.states([job_id]) == Counter({DONE: 1})
    assert ends_per_job(cluster.out) == Counter({job_id: 1})


@pytest.mark.parametrize("backend", ["redis+postgresql"], indirect=True)
def test_sigterm_past_the_deadline_hands_the_job_back(cluster: Cluster) -> None:
    worker = cluster.start_worker("--graceful-timeout-s", "0.2")
    job_id = cluster.enqueue(n=1, sleep_s=1.5)
    cluster.wait_started(job_id)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(10) == 0
    job = cluster.queue.get(job_id)
    assert job is not None and (job.state, job.attempts) == (QUEUED, 0)
    # Its message is back on the queue for the next worker: the stopping worker's idle
    # consumer (concurrency 2) returned from its receive before the hand-back was sent, so it
    # could not take the message with it as the process exited (then only the reaper's
    # re-send, lease_s later, would have brought the job back).
    assert cluster.transport.pending() == 1

    cluster.start_worker()
    cluster.wait_for(lambda: cluster.states([job_id]) == Counter({DONE: 1}))
    assert ends_per_job(cluster.out) == Counter({job_id: 1})
    assert [path.read_bytes() for path in cluster.cutouts()] == [content_for({"n": 1})]
