"""huey as the job transport: it carries job ids, nothing else.

The ``jobs`` table (``stolentee.jobs.queue``) is the source of truth; a message only says "job X
may be ready, try to lease it". Losing a message delays a job until the reaper re-sends it, and a
duplicated message is harmless because leasing is atomic. So huey is used for what it is good at,
a fast shared queue with delayed delivery, and none of its task execution, retries or result
store:

* ``SqliteHuey`` in ``$STOLENTEE_DATA_DIR/queue.db`` on the embedded default (no ``REDIS_URL``),
  in WAL mode with ``synchronous=NORMAL`` like the application database (huey's default, FULL,
  syncs the file on every send and every receive; a message lost to a power cut is one more
  message the reaper re-sends, and the job row it points at is no safer than that);
* ``RedisHuey`` when ``REDIS_URL`` is set (many worker processes and machines).

Messages are ordinary huey task messages for one task registered under the fixed name
:data:`WIRE_NAME`, so every process (API server, workers on other machines) agrees on them. The
worker does not run huey's consumer: it pulls messages itself with :meth:`Transport.receive`
(huey's ``dequeue``) and moves due delayed messages with :meth:`Transport.promote_due` (huey's
``read_schedule``), which is exactly what huey's consumer does internally. Owning the loop is
what lets a worker stop taking messages on SIGTERM, finish or hand back its current jobs within a
deadline, and run in-process inside the API server, none of which huey's consumer allows
(its graceful stop waits without a deadline, and it installs its own signal handlers).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from huey import Huey, MemoryHuey, RedisHuey, SqliteHuey
from huey.exceptions import HueyException
from huey.storage import SqliteStorage
from redis import ConnectionPool

from stolentee.config import Settings

log = logging.getLogger(__name__)

QUEUE_NAME = "stolentee"
# The one registered task; its only argument is a job id. huey names a task on the wire
# "<module>.<name>", so the module is pinned too: moving this file must not rename messages.
TASK_MODULE = "stolentee"
TASK_NAME = "job"
WIRE_NAME = f"{TASK_MODULE}.{TASK_NAME}"
QUEUE_FILE_NAME = "queue.db"
DEFAULT_POLL_S = 0.5  # longest a receive() blocks per call (Redis BRPOP timeout, SQLite polling)
SQLITE_POLL_FLOOR_S = 0.02  # first SQLite re-poll after an empty read; doubles up to the ceiling
# Longest pause between two SQLite polls: a send from another process (the API server) cannot
# wake this one, so this bounds how long an idle worker process takes to notice it. An empty
# poll is one indexed read (huey checks before it takes the write lock): ~10 a second is cheap.
SQLITE_POLL_CEILING_S = 0.1


class QueueFileStorage(SqliteStorage):  # type: ignore[misc]  # huey has no type hints
    """huey's SQLite storage with ``synchronous=NORMAL`` (see the module docstring)."""

    def _create_connection(self) -> Any:
        conn = super()._create_connection()
        conn.execute("pragma synchronous=NORMAL")
        return conn


class SqliteQueue(SqliteHuey):  # type: ignore[misc]  # huey has no type hints
    storage_class = QueueFileStorage


def _refuse_local_execution(job_id: str) -> None:
    """Body of the registered huey task. Jobs run in :class:`stolentee.jobs.worker.Worker`."""
    raise RuntimeError(
        f"job {job_id} reached huey's consumer; run `stolentee worker` instead of huey_consumer"
    )


_refuse_local_execution.__module__ = TASK_MODULE


class Transport:
    """Sends and receives job ids through a huey instance (SQLite, Redis or memory storage).

    Thread-safe: huey's SQLite storage serialises on its own lock, Redis uses a connection pool.
    Sends from this process wake this process's receivers at once (the in-process worker of the
    embedded default does not wait for its next poll).
    """

    def __init__(self, huey: Huey, *, poll_s: float = DEFAULT_POLL_S, blocking: bool = False):
        self.huey = huey
        self.poll_s = poll_s
        self.blocking = blocking  # receive() blocks in the storage itself (Redis BRPOP)
        self.task = huey.task(name=TASK_NAME)(_refuse_local_execution)
        self._wakeup = threading.Condition()
        self._sends = 0

    @property
    def backend(self) -> str:
        if isinstance(self.huey, RedisHuey):
            return "redis"
        if isinstance(self.huey, SqliteHuey):
            return "sqlite"
        return "memory"

    # --- producing ----------------------------------------------------------------------------

    def send(self, job_id: str, delay_s: float = 0) -> None:
        """Send a message for ``job_id``, delivered now or after ``delay_s`` seconds."""
        if delay_s > 0:
            self.huey.add_schedule(self.task.s(job_id, delay=delay_s))
        else:
            self.huey.enqueue(self.task.s(job_id))
            with self._wakeup:
                self._sends += 1
                self._wakeup.notify()

    # --- consuming ----------------------------------------------------------------------------

    def receive(self, timeout_s: float | None = None) -> str | None:
        """The next job id, waiting up to ``timeout_s`` (default ``poll_s``); ``None`` if none.

        A message whose delivery time has not come yet goes (back) to the schedule.
        """
        deadline = time.monotonic() + (self.poll_s if timeout_s is None else timeout_s)
        wait_s = SQLITE_POLL_FLOOR_S
        while True:
            with self._wakeup:
                seen = self._sends
            try:
                task = self.huey.dequeue()
            except HueyException as exc:  # a message no stolentee version sent
                log.warning("dropping an unreadable queue message: %s", exc)
                continue
            if task is not None:
                if not self.huey.ready_to_run(task):
                    self.huey.add_schedule(task)
                    continue
                if not isinstance(task, self.task.task_class) or len(task.args) != 1:
                    log.warning("dropping a queue message that is not a stolentee job: %r", task)
                    continue
                return str(task.args[0])
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.blocking:
                return None
            with self._wakeup:
                if self._sends == seen:
                    self._wakeup.wait(min(wait_s, remaining))
            wait_s = min(wait_s * 2, self.poll_s, SQLITE_POLL_CEILING_S)

    def promote_due(self) -> int:
        """Move delayed messages whose time has come onto the queue; returns how many.

        Safe to run in every worker process at once: huey pops due messages atomically.
        """
        due = self.huey.read_schedule()
        for task in due:
            self.huey.enqueue(task)
        if due:
            with self._wakeup:
                self._sends += len(due)
                self._wakeup.notify_all()
        return len(due)

    def wake_all(self) -> None:
        """Wake receivers blocked in this process (used when a worker stops)."""
        with self._wakeup:
            self._sends += 1
            self._wakeup.notify_all()

    # --- inspection ---------------------------------------------------------------------------

    def pending(self) -> int:
        """Messages waiting to be received now."""
        return int(self.huey.pending_count())

    def scheduled(self) -> int:
        """Delayed messages not due yet."""
        return int(self.huey.scheduled_count())

    def flush(self) -> None:
        """Drop every message (tests; ``stolentee`` never needs this: the table recovers)."""
        self.huey.storage.flush_queue()
        self.huey.storage.flush_schedule()

    def close(self) -> None:
        storage: Any = self.huey.storage
        if isinstance(self.huey, SqliteHuey):
            storage.close()
        elif isinstance(self.huey, RedisHuey):
            storage.pool.disconnect()


def queue_file(settings: Settings) -> Path:
    return settings.service.data_dir / QUEUE_FILE_NAME


def build_transport(settings: Settings, *, poll_s: float = DEFAULT_POLL_S) -> Transport:
    """The transport the settings ask for: Redis when ``REDIS_URL`` is set, SQLite otherwise.

    Build it once per process (worker start-up, API lifespan) and share it.
    """
    redis_url = settings.queue.redis_url.get_secret_value().strip()
    if redis_url:
        huey: Huey = RedisHuey(
            QUEUE_NAME,
            results=False,
            connection_pool=ConnectionPool.from_url(redis_url, health_check_interval=30),
            blocking=True,
            read_timeout=poll_s,
        )
        return Transport(huey, poll_s=poll_s, blocking=True)
    path = queue_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    huey = SqliteQueue(QUEUE_NAME, results=False, filename=str(path), timeout=10)
    return Transport(huey, poll_s=poll_s)


def memory_transport(*, poll_s: float = DEFAULT_POLL_S) -> Transport:
    """An in-process transport (tests, or one process that enqueues and works alone)."""
    return Transport(MemoryHuey(QUEUE_NAME, results=False), poll_s=poll_s)
