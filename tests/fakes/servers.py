"""Private PostgreSQL and Redis servers a test may stop, kill and restart.

Never the shared servers of the machine: each is started on its own free port in a temporary
directory (``initdb`` + ``pg_ctl`` for PostgreSQL, ``redis-server --port`` for Redis) and removed
afterwards. Where the binaries are missing, :func:`postgres_unavailable` /
:func:`redis_unavailable` say why, and the tests skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.fakes.processes import free_port

START_TIMEOUT_S = 60.0


def postgres_unavailable() -> str | None:
    for tool in ("initdb", "pg_ctl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "PostgreSQL refuses to run as root and runuser is missing"
    return None


def redis_unavailable() -> str | None:
    return None if shutil.which("redis-server") else "redis-server is not installed"


def _as_postgres_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as the ``postgres`` user then (or ``nobody``)."""
    if os.geteuid() != 0:
        return command
    user = "postgres" if _user_exists("postgres") else "nobody"
    return ["runuser", "-u", user, "--", *command]


def _user_exists(name: str) -> bool:
    try:
        import pwd

        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster of its own: ``start()``, ``restart_immediate()``, ``stop()``.

    Its directory is a fresh one under the system's temp dir (a test's ``tmp_path`` is private
    to root, and the server may have to run as another user); ``remove()`` deletes it."""

    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="stolentee-pg-")))
    port: int = field(default_factory=free_port)
    database: str = "stolentee"

    @property
    def data(self) -> Path:
        return self.directory / "pgdata"

    @property
    def user(self) -> str:
        return "stolentee"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # our own command line
            _as_postgres_user(list(command)), capture_output=True, text=True, check=True
        )

    def start(self) -> PrivatePostgres:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o755)
        if os.geteuid() == 0:
            owner = "postgres" if _user_exists("postgres") else "nobody"
            shutil.chown(self.directory, user=owner)
        if not self.data.exists():
            self._run(
                "initdb", "-D", str(self.data), "-U", self.user, "--auth=trust",
                "--no-sync", "-E", "UTF8",
            )  # fmt: skip
        self._pg_ctl("start", "-w", "-t", str(int(START_TIMEOUT_S)))
        if self.database not in self._databases():
            self._run(
                "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d",
                "postgres", "-c", f"CREATE DATABASE {self.database}",
            )  # fmt: skip
        return self

    def _databases(self) -> str:
        return self._run(
            "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", "postgres",
            "-Atc", "SELECT datname FROM pg_database",
        ).stdout  # fmt: skip

    def _pg_ctl(self, action: str, *extra: str) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl", action, "-D", str(self.data), "-o", options,
            "-l", str(self.directory / "postgres.log"), *extra,
        )  # fmt: skip

    def restart_immediate(self, down_s: float = 1.0) -> None:
        """Stop at once (no checkpoint, clients cut off, as a crash), wait, start again."""
        self._pg_ctl("stop", "-m", "immediate", "-w")
        time.sleep(down_s)
        self._pg_ctl("start", "-w", "-t", str(int(START_TIMEOUT_S)))

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._pg_ctl("stop", "-m", "fast", "-w")

    def start_again(self) -> None:
        """Start the stopped cluster again, with its data."""
        self._pg_ctl("start", "-w", "-t", str(int(START_TIMEOUT_S)))

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass
class PrivateRedis:
    """A ``redis-server`` of its own, without persistence: a restart comes back empty."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        self.directory.mkdir(parents=True, exist_ok=True)
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(  # our own command line
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        try:
            while True:
                try:
                    client.ping()
                    return self
                except redis.ConnectionError:
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        raise RuntimeError("private redis-server did not start") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: every message it held is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
