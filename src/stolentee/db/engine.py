"""Database engine, connection pool with the seed's settings, and pool monitoring.

Seed section 2.3: at most 15 pooled connections in production and 5 in development, idle
connections closed after 10 s, PostgreSQL ``statement_timeout`` 30 s, application-level query
timeout 10 s, and pool monitoring from the pool's events (connect, checkout, checkin,
invalidate, close) with live figures total / idle / in use / waiting, logged on exhaustion.

SQLite (the embedded default) runs in WAL mode with foreign keys on. PostgreSQL uses psycopg 3.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from stolentee.config import DatabaseSettings
from stolentee.db.pool import IDLE_SINCE_KEY, MonitoredQueuePool, PoolFigures, PoolMonitor
from stolentee.db.timeouts import Deadline, QueryWatchdog
from stolentee.errors import (
    DatabaseUnavailableError,
    InsufficientStorageError,
    QueryTimeoutError,
)

log = logging.getLogger(__name__)

_DEADLINE = "stolentee_deadline"


class Database:
    """The engine, its pool, a session factory and the pool's monitor, built once per process."""

    def __init__(
        self, *, settings: DatabaseSettings, watchdog: bool = True, synchronous_commit: bool = True
    ) -> None:
        """``synchronous_commit=False`` (PostgreSQL only): commits return before their WAL
        record is flushed to disk; for processes whose every write the jobs table can redo
        (workers, see ``DatabaseSettings.worker_synchronous_commit``)."""
        self.settings = settings
        self.synchronous_commit = synchronous_commit
        self.url = make_url(settings.resolved_url)
        self.pool_max = settings.pool_max_connections or 5
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.is_postgres = self.url.get_backend_name() == "postgresql"
        if self.is_sqlite:
            self._prepare_sqlite_dir()
        self.engine: Engine = create_engine(
            self.url,
            poolclass=MonitoredQueuePool,
            pool_size=self.pool_max,
            max_overflow=0,
            pool_timeout=settings.pool_timeout_s,
            pool_use_lifo=True,  # idle connections sink to the bottom and get closed
            pool_pre_ping=False,
            connect_args=self._connect_args(),
        )
        pool = self.engine.pool
        assert isinstance(pool, MonitoredQueuePool)
        self.pool: MonitoredQueuePool = pool
        self.monitor = PoolMonitor(pool)
        self.watchdog = QueryWatchdog(timeout_s=settings.query_timeout_s) if watchdog else None
        self._install_engine_events()
        self.sessions = sessionmaker(bind=self.engine, expire_on_commit=False)
        self._reaper_stop = threading.Event()
        self._reaper: threading.Thread | None = None

    # --- construction -------------------------------------------------------------------------

    def _prepare_sqlite_dir(self) -> None:
        database = self.url.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)

    def _connect_args(self) -> dict[str, Any]:
        s = self.settings
        if self.is_sqlite:
            return {"timeout": s.query_timeout_s, "check_same_thread": False}
        if self.is_postgres:
            options = [f"-c statement_timeout={int(s.statement_timeout_s * 1000)}"]
            if not self.synchronous_commit:
                options.append("-c synchronous_commit=off")
            existing = self.url.query.get("options")
            if isinstance(existing, str) and existing:
                options.insert(0, existing)
            return {
                "connect_timeout": max(1, round(s.connect_timeout_s)),
                "options": " ".join(options),
                "application_name": "stolentee",
            }
        return {}

    def _install_engine_events(self) -> None:
        if self.is_sqlite:
            event.listen(self.engine, "connect", _configure_sqlite)
        event.listen(self.engine.pool, "checkout", self._recycle_if_idle_too_long)
        if self.watchdog is not None:
            event.listen(self.engine, "before_cursor_execute", self._arm_deadline)
            event.listen(self.engine, "after_cursor_execute", self._disarm_deadline)
        event.listen(self.engine, "handle_error", self._translate_error)

    def _recycle_if_idle_too_long(
        self, dbapi_conn: Any, record: ConnectionPoolEntry, proxy: Any
    ) -> None:
        idle_since = record.info.get(IDLE_SINCE_KEY)
        if (
            idle_since is not None
            and time.monotonic() - idle_since > self.settings.pool_idle_timeout_s
        ):
            # Documented SQLAlchemy protocol: the pool reconnects this record and retries.
            record.info[IDLE_SINCE_KEY] = time.monotonic()
            raise sa_exc.DisconnectionError("connection idle past the pool's idle timeout")

    def _arm_deadline(
        self, conn: Connection, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        assert self.watchdog is not None
        dbapi_conn = conn.connection.dbapi_connection
        conn.info[_DEADLINE] = self.watchdog.register(_canceller(dbapi_conn))

    def _disarm_deadline(
        self, conn: Connection, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        self._finish_deadline(conn)

    def _finish_deadline(self, conn: Connection | None) -> Deadline | None:
        if conn is None or self.watchdog is None:
            return None
        deadline: Deadline | None = conn.info.pop(_DEADLINE, None)
        if deadline is not None:
            self.watchdog.finish(deadline)
        return deadline

    def _translate_error(self, context: ExceptionContext) -> BaseException | None:
        deadline = self._finish_deadline(context.connection)
        if deadline is not None and deadline.fired:
            return QueryTimeoutError(
                f"query cancelled after the {self.settings.query_timeout_s:g} s query timeout"
            )
        if _disk_full(context.original_exception):
            return InsufficientStorageError(
                "the database has no disk space left for this change; try again later"
            )
        if context.connection is None or context.is_disconnect:
            reason = str(context.original_exception).strip().splitlines()
            return DatabaseUnavailableError(
                f"cannot reach the database: {reason[0] if reason else 'connection failed'}"
            )
        return None

    # --- use ----------------------------------------------------------------------------------

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on error."""
        with self.sessions.begin() as session:
            yield session

    def ping(self) -> float:
        """Round-trip ``SELECT 1`` now; returns the latency in milliseconds."""
        started = time.perf_counter()
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1")).scalar_one()
        return (time.perf_counter() - started) * 1000.0

    def figures(self) -> PoolFigures:
        pool, monitor = self.pool, self.monitor
        idle = pool.checkedin()
        in_use = pool.checkedout()
        return PoolFigures(
            max=pool.capacity,
            total=idle + in_use,
            idle=idle,
            in_use=in_use,
            waiting=pool.waiting,
            connects=monitor.connects,
            checkouts=monitor.checkouts,
            checkins=monitor.checkins,
            invalidations=monitor.invalidations,
            closes=monitor.closes,
            exhaustions=pool.exhaustions,
            timeouts=pool.timeouts,
            idle_closed=pool.idle_closed,
            queries_cancelled=self.watchdog.cancelled if self.watchdog else 0,
        )

    def close_idle(self) -> int:
        """Close connections idle past ``pool_idle_timeout_s`` (the reaper calls this)."""
        return self.pool.close_idle(self.settings.pool_idle_timeout_s)

    def start_idle_reaper(self) -> None:
        """Close idle connections in the background, checking every half idle timeout."""
        if self._reaper is not None:
            return
        interval = max(0.05, self.settings.pool_idle_timeout_s / 2)

        def run() -> None:
            while not self._reaper_stop.wait(interval):
                try:
                    self.close_idle()
                except Exception:
                    log.exception("closing idle database connections failed")

        self._reaper = threading.Thread(target=run, name="stolentee-pool-reaper", daemon=True)
        self._reaper.start()

    def dispose(self) -> None:
        self._reaper_stop.set()
        if self._reaper is not None:
            self._reaper.join(timeout=5)
            self._reaper = None
        if self.watchdog is not None:
            self.watchdog.stop()
        self.engine.dispose()


_WAL_SWITCH_WAIT_S = 10.0  # how long a new connection retries turning a fresh file to WAL


def _configure_sqlite(dbapi_conn: sqlite3.Connection, record: ConnectionPoolEntry) -> None:
    cursor = dbapi_conn.cursor()
    try:
        _use_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _use_wal(cursor: sqlite3.Cursor) -> None:
    """Put the database in WAL mode (a property of the file, set once by its first user).

    The switch needs the file to itself, and SQLite answers "database is locked" at once,
    without waiting the busy timeout, while another process holds a lock on it: processes
    starting together on a new database (the HTTP workers of one ``serve``) collide here. A
    file already in WAL mode needs no switch; otherwise the switch is retried for a while.
    """
    deadline = time.monotonic() + _WAL_SWITCH_WAIT_S
    while True:
        try:
            mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _canceller(dbapi_conn: Any) -> Callable[[], None]:
    """How to interrupt the statement running on this DBAPI connection, from another thread."""
    if isinstance(dbapi_conn, sqlite3.Connection):
        return dbapi_conn.interrupt
    cancel_safe = getattr(dbapi_conn, "cancel_safe", None)
    if cancel_safe is not None:
        return lambda: cancel_safe(timeout=5.0)
    cancel: Callable[[], None] = dbapi_conn.cancel
    return cancel


_SQLITE_FULL = 13  # SQLITE_FULL: "database or disk is full"
_PG_DISK_FULL = "53100"  # SQLSTATE disk_full


def _disk_full(exc: BaseException) -> bool:
    """Whether a driver error means the database's disk (or quota) is full."""
    if getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL:
        return True
    if getattr(exc, "sqlstate", None) == _PG_DISK_FULL:
        return True
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
