"""HAProxy (Debian's ``haproxy``) on loopback in front of real stolentee processes, as the load
balancer of the zero-downtime tests: health checks on ``/readyz``, no retries."""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.fakes.processes import free_port

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def available() -> bool:
    return Path(HAPROXY).exists()


@dataclass
class HAProxy:
    """``backends``: ports of the servers; checks every ``inter_ms``, down after ``fall``."""

    backends: list[int]
    directory: Path
    inter_ms: int = 500
    fall: int = 2
    rise: int = 2
    port: int = field(default_factory=free_port)
    stats_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> str:
        servers = "\n".join(
            f"    server s{n} 127.0.0.1:{port} check" for n, port in enumerate(self.backends)
        )
        return f"""
global
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 0
    option http-keep-alive
backend stolentee
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter {self.inter_ms}ms fall {self.fall} rise {self.rise}
{servers}
frontend web
    bind 127.0.0.1:{self.port}
    default_backend stolentee
frontend stats
    bind 127.0.0.1:{self.stats_port}
    http-request use-service prometheus-exporter if {{ path /metrics }}
    stats enable
    stats uri /stats
"""

    def start(self) -> HAProxy:
        path = self.directory / "haproxy.cfg"
        path.write_text(self.config())
        checked = subprocess.run(  # our own command line
            [HAPROXY, "-c", "-f", str(path)], capture_output=True, text=True, check=False
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        log = (self.directory / "haproxy.log").open("wb")
        self.process = subprocess.Popen(  # our own command line
            [HAPROXY, "-db", "-f", str(path)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self.wait_up(len(self.backends))
        return self

    def servers_up(self) -> int:
        text = httpx.get(f"http://127.0.0.1:{self.stats_port}/stats;csv", timeout=5).text
        rows = [line.split(",") for line in text.splitlines() if line.startswith("stolentee,s")]
        return sum(1 for row in rows if row[17].startswith("UP"))

    def wait_up(self, count: int, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if self.servers_up() >= count:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"HAProxy: {count} servers not up within {timeout_s} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
