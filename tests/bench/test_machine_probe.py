"""The load benchmarks' machine probe (``benchmarks/machine_probe.py``): the server's p95 read
from the project's own /metrics text, and the CPU it samples."""

from __future__ import annotations

import os
import time
from types import ModuleType

import pytest

from stolentee.metrics import Metrics
from tests.bench.scripts import load_script


@pytest.fixture(scope="module")
def probe() -> ModuleType:
    return load_script("machine_probe")


def _page(durations: dict[tuple[str, str], list[float]]) -> str:
    metrics = Metrics()
    for (method, route), values in durations.items():
        for value in values:
            metrics.http_duration.labels(method, route).observe(value)
    return metrics.exposition().decode()


def test_the_server_p95_comes_from_the_projects_own_histogram(probe: ModuleType) -> None:
    before = probe.parse_buckets(_page({("GET", "/health"): [0.001] * 10}))
    after = probe.parse_buckets(
        _page(
            {
                ("GET", "/health"): [0.001] * 10 + [0.003] * 90 + [0.3] * 10,
                ("POST", "/v1/designs"): [0.04] * 30,
                ("GET", "/metrics"): [20.0] * 50,  # the probe's own scrapes are left out
            }
        )
    )
    # Between the two pages: 90 at 3 ms, 10 at 0.3 s (GET /health) and 30 at 40 ms (uploads).
    assert probe.p95_from_buckets(before["GET /health"], after["GET /health"]) == 0.5
    uploads = after["POST /v1/designs"]
    assert probe.p95_from_buckets(before.get("POST /v1/designs", {}), uploads) == 0.05
    # All 130 together: the 95th percentile (the 124th) is past the 120 at or under 50 ms.
    assert probe.p95_from_buckets(before["all"], after["all"]) == 0.5
    assert "GET /metrics" not in after


def test_too_few_requests_give_no_p95(probe: ModuleType) -> None:
    page = probe.parse_buckets(_page({("GET", "/health"): [0.001] * 19}))
    assert probe.p95_from_buckets({}, page["GET /health"]) is None


def test_the_probe_sees_a_busy_process(probe: ModuleType) -> None:
    watcher = probe.MachineProbe(pids=lambda: {"me": os.getpid()}, interval_s=0.2).start()
    began = time.monotonic()
    while time.monotonic() - began < 1.5:  # busy: this process uses a CPU
        sum(range(10_000))
    watcher.stop()
    seen = watcher.window(began, time.monotonic())
    assert seen["cpu_me"] > 0.1
    assert 0.0 <= seen["idle"] <= 1.0
    assert {"user", "system", "iowait", "steal"} <= set(seen)
