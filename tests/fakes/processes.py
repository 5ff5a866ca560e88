"""Real stolentee processes for integration tests: start on a free port, wait until ready, kill.

Used where an issue asks for real processes (a main service, a standalone removal service, a
Remove.bg stand-in), so that killing one is a real SIGKILL and a restart a real start-up.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

STOLENTEE = str(Path(sys.executable).with_name("stolentee"))
READY_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_environment() -> dict[str, str]:
    """This process's environment without any setting a developer's shell may carry."""
    prefixes = ("STOLENTEE_", "DATABASE_URL", "REDIS_URL", "REMBG_", "REMOVEBG_", "S3_", "R2_")
    return {name: value for name, value in os.environ.items() if not name.startswith(prefixes)}


@dataclass
class StolenteeProcess:
    """``stolentee <args>`` with ``env`` added, on ``port`` (kept across restarts)."""

    args: list[str]
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    # A command the process runs under (tests.fakes.tmpfs: a private mount namespace); it must
    # end by exec-ing its arguments, so that the process is the server itself.
    prefix: list[str] = field(default_factory=list)
    # Ready when the log says this (processes without HTTP, such as `stolentee worker`), instead
    # of when /readyz answers 200.
    ready_line: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StolenteeProcess:
        env = {**clean_environment(), **self.env, "PORT": str(self.port)}
        env.setdefault("STOLENTEE_HOST", "127.0.0.1")
        # No load balancer to leave in the tests: stop at once unless a test asks for a drain.
        env.setdefault("STOLENTEE_SHUTDOWN_DRAIN_S", "0")
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # our own command line
            [*self.prefix, STOLENTEE, *self.args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.args} exited: {self.log_tail()}")
            if self.ready_line is not None:
                if self.ready_line in self.log_tail(400):
                    return
                time.sleep(0.1)
                continue
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.args} not ready in {READY_TIMEOUT_S}s: {self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no graceful anything, as when a machine dies."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
