"""Graceful drain on SIGTERM: the drain's own rules, the app while draining, and real
``stolentee serve`` processes replaced one after the other behind a real HAProxy (health check
on ``/readyz``, no retries) under steady traffic, with not one request failing."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from stolentee.api.app import create_app
from stolentee.api.drain import Drain
from tests.fakes import haproxy
from tests.fakes.processes import STOLENTEE, StolenteeProcess, clean_environment

from ..conftest import SettingsFactory
from ..removal.conftest import composite, draw_logo, encode

LOGO = encode(composite(draw_logo((120, 80)), (255, 255, 255)))


# --- the drain's rules ------------------------------------------------------------------------


@dataclass
class ServerHandler:
    """Stands in for uvicorn's SIGTERM handler: records when it is told to stop."""

    calls: list[float] = field(default_factory=list)

    def __call__(self, sig: int, frame: object) -> None:
        self.calls.append(time.monotonic())


def drain_with(handler: ServerHandler, **kwargs: object) -> Drain:
    drain = Drain(**kwargs)  # type: ignore[arg-type]
    drain._server_handler = handler  # what install() reads back from the signal module
    return drain


def test_sigterm_drains_then_stops_and_a_second_one_stops_at_once() -> None:
    handler = ServerHandler()
    drain = drain_with(handler, drain_s=0.3)
    assert not drain.draining
    started = time.monotonic()
    drain._on_sigterm(signal.SIGTERM, None)
    assert drain.draining and handler.calls == []  # serving on, /readyz 503
    time.sleep(0.6)
    assert len(handler.calls) == 1 and handler.calls[0] - started >= 0.3

    impatient = ServerHandler()
    drain = drain_with(impatient, drain_s=30)
    drain._on_sigterm(signal.SIGTERM, None)
    drain._on_sigterm(signal.SIGTERM, None)
    assert len(impatient.calls) == 1  # the second signal did not wait


def test_a_worker_of_a_draining_server_leaves_the_timing_to_its_parent(tmp_path: Path) -> None:
    marker = tmp_path / "draining"
    handler = ServerHandler()
    worker = drain_with(handler, drain_s=5, marker=marker)
    assert not worker.draining
    worker._on_sigterm(signal.SIGTERM, None)  # the whole process group was signalled...
    Drain(drain_s=5, marker=marker).begin()  # ...and the parent starts draining
    time.sleep(0.5)
    assert worker.draining and handler.calls == []
    worker._on_sigterm(signal.SIGTERM, None)  # the parent's drain is over: stop now
    assert len(handler.calls) == 1


def test_a_worker_replaced_alone_stops_without_draining_the_server(tmp_path: Path) -> None:
    handler = ServerHandler()
    worker = drain_with(handler, drain_s=5, marker=tmp_path / "draining")
    worker._on_sigterm(signal.SIGTERM, None)  # SIGHUP rolling restart: no marker comes
    time.sleep(2.5)
    assert len(handler.calls) == 1
    assert not worker.draining  # its siblings' /readyz stays 200


def test_while_draining_readyz_fails_and_every_response_closes_its_connection(
    make_settings: SettingsFactory,
) -> None:
    with TestClient(create_app(make_settings(), run_worker=False)) as client:
        assert client.get("/readyz").status_code == 200
        assert client.get("/health").headers.get("connection") != "close"
        client.app.state.services.drain.begin()  # type: ignore[attr-defined]
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["output"] == "draining: shutting down"
        served = client.get("/health")
        assert served.status_code == 200 and served.headers["connection"] == "close"


# --- real processes behind HAProxy ------------------------------------------------------------


@dataclass
class Traffic:
    """Clients through the load balancer until stopped: keep-alive GETs and uploads."""

    url: str
    threads: int = 6
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    uploads: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _running: list[threading.Thread] = field(default_factory=list)

    def _client(self, n: int) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            i = 0
            while not self._stop.is_set():
                i += 1
                try:
                    if n == 0 and i % 5 == 0:
                        response = client.post("/v1/designs", files={"file": ("l.png", LOGO)})
                        expected = 202
                    else:
                        response = client.get("/v1/designs?limit=5" if i % 2 else "/health")
                        expected = 200
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                with self._lock:
                    if response.status_code == expected:
                        self.ok += 1
                        self.uploads += expected == 202
                    else:
                        self.failures.append(f"{response.status_code}: {response.text[:200]}")
                time.sleep(0.01)

    def __enter__(self) -> Traffic:
        for n in range(self.threads):
            thread = threading.Thread(target=self._client, args=(n,), daemon=True)
            thread.start()
            self._running.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._running:
            thread.join(timeout=30)


needs_haproxy = pytest.mark.skipif(not haproxy.available(), reason="haproxy is not installed")


@pytest.fixture
def database_env(pg_schema_url: str) -> dict[str, str]:
    env = {"DATABASE_URL": pg_schema_url, "STOLENTEE_RUN_WORKER": "false"}
    subprocess.run(  # our own command line
        [STOLENTEE, "db", "upgrade"], env={**clean_environment(), **env}, check=True,
        capture_output=True, timeout=120,
    )  # fmt: skip
    return env


def replace(process: StolenteeProcess) -> None:
    """What a deploy does: SIGTERM to the server alone (as Kubernetes and Docker send it),
    wait for it to exit, start the new version on the same port."""
    assert process.process is not None
    os.kill(process.process.pid, signal.SIGTERM)
    process.process.wait(timeout=60)
    process.start()


@needs_haproxy
def test_replacing_every_instance_behind_haproxy_fails_no_request(
    tmp_path: Path, database_env: dict[str, str]
) -> None:
    env = {
        **database_env,
        "STOLENTEE_DATA_DIR": str(tmp_path / "data"),  # shared local storage
        "STOLENTEE_SHUTDOWN_DRAIN_S": "2",  # HAProxy below needs 2 x 0.5 s to notice
    }
    instances = [
        StolenteeProcess(["serve"], env, tmp_path / f"api-{n}.log").start() for n in (1, 2)
    ]
    balancer = haproxy.HAProxy([i.port for i in instances], tmp_path).start()
    try:
        with Traffic(balancer.url) as traffic:
            time.sleep(1)
            for instance in instances:
                replace(instance)
                balancer.wait_up(2)
            time.sleep(1)
        assert traffic.failures == [], traffic.failures[:10]
        assert traffic.ok > 200 and traffic.uploads > 5
    finally:
        balancer.stop()
        for instance in instances:
            instance.stop()


@needs_haproxy
def test_a_rolling_restart_of_the_http_workers_fails_no_request(
    tmp_path: Path, database_env: dict[str, str]
) -> None:
    env = {
        **database_env,
        "STOLENTEE_DATA_DIR": str(tmp_path / "data"),
        "STOLENTEE_HTTP_WORKERS": "2",
        "STOLENTEE_SHUTDOWN_DRAIN_S": "2",
    }
    server = StolenteeProcess(["serve"], env, tmp_path / "api.log").start()
    balancer = haproxy.HAProxy([server.port], tmp_path).start()
    try:
        with Traffic(balancer.url) as traffic:
            time.sleep(1)
            assert server.process is not None
            os.kill(server.process.pid, signal.SIGHUP)  # replace each worker, one at a time
            deadline = time.monotonic() + 60
            while server.log_path.read_text().count("this worker alone is replaced") < 2:
                assert time.monotonic() < deadline, server.log_tail()
                time.sleep(0.2)
            time.sleep(1)
        assert traffic.failures == [], traffic.failures[:10]
        assert traffic.ok > 100
        assert balancer.servers_up() == 1  # never marked down
    finally:
        balancer.stop()
        server.stop()
