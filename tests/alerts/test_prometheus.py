"""A real Prometheus (Debian's ``prometheus``) scrapes a running ``stolentee serve`` with the
shipped rules, and alerts go pending when their conditions are made real: a queue backlog with
no worker running, then the instance stopped."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.processes import StolenteeProcess, free_port

from ..removal.conftest import composite, draw_logo, encode

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus is not installed")
LOGO = encode(composite(draw_logo((120, 80)), (255, 255, 255)))


def prometheus_config(target: str) -> str:
    return f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {RULES / "recording.yml"}
  - {RULES / "alerts.yml"}
scrape_configs:
  - job_name: stolentee-api
    static_configs:
      - targets: ["{target}"]
"""


@pytest.fixture
def service(tmp_path: Path) -> Iterator[StolenteeProcess]:
    server = StolenteeProcess(
        ["serve", "--no-worker"],
        {"STOLENTEE_DATA_DIR": str(tmp_path / "data")},
        tmp_path / "serve.log",
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(target: str) -> str:
        assert PROMETHEUS is not None
        (tmp_path / "prometheus.yml").write_text(prometheus_config(target))
        port = free_port()
        log = (tmp_path / "prometheus.log").open("wb")
        started.append(
            subprocess.Popen(  # our own command line
                [
                    PROMETHEUS,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        url = f"http://127.0.0.1:{port}"
        wait(lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code == 200, "ready")
        return url

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=30)


def wait(condition: Callable[[], Any], what: str, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            result = condition()
        except httpx.HTTPError:
            result = None
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"Prometheus: {what} not seen in {timeout_s} s")


def alerts(url: str) -> dict[str, dict[str, Any]]:
    body = httpx.get(f"{url}/api/v1/alerts", timeout=5).json()
    return {alert["labels"]["alertname"]: alert for alert in body["data"]["alerts"]}


def query(url: str, expr: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5).json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def test_a_queue_backlog_and_a_stopped_instance_make_the_shipped_alerts_go_pending(
    service: StolenteeProcess, prometheus: Callable[[str], str]
) -> None:
    url = prometheus(f"127.0.0.1:{service.port}")
    rules = httpx.get(f"{url}/api/v1/rules", timeout=5).json()["data"]["groups"]
    loaded = {rule["name"] for group in rules for rule in group["rules"]}
    assert {"StolenteeQueueBacklog", "StolenteeInstanceDown"} <= loaded
    assert all(rule["health"] != "err" for group in rules for rule in group["rules"])

    # Scraped and evaluated, and quiet: nothing queued, the instance up.
    wait(lambda: query(url, 'up{job="stolentee-api"} == 1'), "the target up")
    wait(lambda: query(url, "stolentee_queue_depth == 0"), "an empty queue")
    time.sleep(2)  # a couple of evaluations
    assert "StolenteeQueueBacklog" not in alerts(url)

    # 21 designs with no worker to take them: over the rule's 20.
    for _ in range(21):
        uploaded = httpx.post(
            f"{service.url}/v1/designs", files={"file": ("logo.png", LOGO)}, timeout=30
        )
        assert uploaded.status_code == 202, uploaded.text
    backlog = wait(lambda: alerts(url).get("StolenteeQueueBacklog"), "the backlog alert")
    assert backlog["state"] == "pending"  # `for: 10m`: pending first, as the rule says
    assert backlog["labels"]["severity"] == "warning"
    assert float(backlog["value"]) == 21
    assert "StolenteeInstanceDown" not in alerts(url)

    service.stop()
    down = wait(lambda: alerts(url).get("StolenteeInstanceDown"), "the instance-down alert")
    assert down["state"] == "pending"
    assert down["labels"]["instance"] == f"127.0.0.1:{service.port}"
