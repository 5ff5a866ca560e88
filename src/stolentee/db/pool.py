"""The connection pool, watched: a QueuePool that counts waits, exhaustions, timeouts and idle
closes, and the figures health and metrics report."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool
from sqlalchemy.util import queue as sqla_queue

from stolentee.errors import (
    DatabaseBusyError,
)

log = logging.getLogger(__name__)


IDLE_SINCE_KEY = "stolentee_idle_since"


_EXHAUSTED_LOG_INTERVAL_S = 10.0


@dataclass(frozen=True, slots=True)
class PoolFigures:
    """A snapshot of the pool: live figures and the event counters since start-up."""

    max: int
    total: int
    idle: int
    in_use: int
    waiting: int
    connects: int
    checkouts: int
    checkins: int
    invalidations: int
    closes: int
    exhaustions: int
    timeouts: int
    idle_closed: int
    queries_cancelled: int

    def as_dict(self) -> dict[str, int]:
        return {
            "max": self.max,
            "total": self.total,
            "idle": self.idle,
            "inUse": self.in_use,
            "waiting": self.waiting,
            "connects": self.connects,
            "checkouts": self.checkouts,
            "checkins": self.checkins,
            "invalidations": self.invalidations,
            "closes": self.closes,
            "exhaustions": self.exhaustions,
            "timeouts": self.timeouts,
            "idleClosed": self.idle_closed,
            "queriesCancelled": self.queries_cancelled,
        }


class MonitoredQueuePool(QueuePool):
    """A ``QueuePool`` that counts waiters, logs exhaustion and can close idle connections.

    ``_do_get`` is the hook SQLAlchemy pool subclasses override; everything else uses the
    public pool API or the pool's own queue, as ``QueuePool.dispose`` does.
    """

    def __init__(self, creator: Any, **kw: Any) -> None:
        super().__init__(creator, **kw)
        self._stats_lock = threading.Lock()
        self.waiting = 0
        self.exhaustions = 0
        self.timeouts = 0
        self.idle_closed = 0
        self._last_exhausted_log = 0.0

    @property
    def capacity(self) -> int:
        return self.size() + max(self._max_overflow, 0)

    def _do_get(self) -> ConnectionPoolEntry:
        if self.checkedout() < self.capacity:
            return super()._do_get()
        with self._stats_lock:
            self.waiting += 1
            self.exhaustions += 1
            now = time.monotonic()
            should_log = now - self._last_exhausted_log >= _EXHAUSTED_LOG_INTERVAL_S
            if should_log:
                self._last_exhausted_log = now
        if should_log:
            log.warning(
                "database pool exhausted: %d/%d connections in use, %d waiting",
                self.checkedout(),
                self.capacity,
                self.waiting,
            )
        try:
            return super()._do_get()
        except sa_exc.TimeoutError as exc:
            with self._stats_lock:
                self.timeouts += 1
            raise DatabaseBusyError(
                f"no database connection became free within {self.timeout():g} s "
                f"({self.capacity} in use)"
            ) from exc
        finally:
            with self._stats_lock:
                self.waiting -= 1

    def close_idle(self, max_idle_s: float) -> int:
        """Close pooled connections idle for longer than ``max_idle_s``; returns how many."""
        now = time.monotonic()
        keep: list[ConnectionPoolEntry] = []
        closed = 0
        while True:
            try:
                record = self._pool.get(False)
            except sqla_queue.Empty:
                break
            idle_since = record.info.get(IDLE_SINCE_KEY, now)
            if now - idle_since > max_idle_s:
                record.close()
                self._dec_overflow()
                closed += 1
            else:
                keep.append(record)
        for record in keep:
            self._do_return_conn(record)
        if closed:
            with self._stats_lock:
                self.idle_closed += closed
        return closed


class PoolMonitor:
    """Counters fed by the pool's events."""

    def __init__(self, pool: MonitoredQueuePool) -> None:
        self.pool = pool
        self.connects = 0
        self.checkouts = 0
        self.checkins = 0
        self.invalidations = 0
        self.closes = 0
        self._lock = threading.Lock()
        event.listen(pool, "connect", self._on_connect)
        event.listen(pool, "checkout", self._on_checkout)
        event.listen(pool, "checkin", self._on_checkin)
        event.listen(pool, "invalidate", self._on_invalidate)
        event.listen(pool, "soft_invalidate", self._on_invalidate)
        event.listen(pool, "close", self._on_close)
        event.listen(pool, "close_detached", self._on_close_detached)

    def _bump(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def _on_connect(self, dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        record.info[IDLE_SINCE_KEY] = time.monotonic()
        self._bump("connects")

    def _on_checkout(self, dbapi_conn: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
        self._bump("checkouts")

    def _on_checkin(self, dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        record.info[IDLE_SINCE_KEY] = time.monotonic()
        self._bump("checkins")

    def _on_invalidate(self, dbapi_conn: Any, record: ConnectionPoolEntry, exc: Any) -> None:
        self._bump("invalidations")
        log.info("database connection invalidated: %s", exc)

    def _on_close(self, dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        self._bump("closes")

    def _on_close_detached(self, dbapi_conn: Any) -> None:
        self._bump("closes")
