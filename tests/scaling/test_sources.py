"""Samples from Prometheus text: parsing a real exposition, rates, averaging, unreachable URLs."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector, generate_latest

from stolentee.scaling import sources
from stolentee.scaling.policy import Sample
from stolentee.scaling.sources import (
    GB,
    MemorySource,
    MetricsSource,
    ReplicaSize,
    Scrape,
    parse_metrics,
)
from tests.scaling.conftest import LocalServer, Recorded, Reply

# A /metrics page as prometheus_client writes it: process figures, our gauges, and neighbours
# (histograms, labelled counters) the parser must step over.
EXPOSITION = """\
# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 5.36870912e+08
# HELP stolentee_http_request_duration_seconds HTTP request latency by method and route.
# TYPE stolentee_http_request_duration_seconds histogram
stolentee_http_request_duration_seconds_bucket{method="GET",route="/health",le="0.005"} 3.0
stolentee_http_request_duration_seconds_bucket{method="GET",route="/health",le="+Inf"} 4.0
stolentee_http_request_duration_seconds_count{method="GET",route="/health"} 4.0
stolentee_http_request_duration_seconds_sum{method="GET",route="/health"} 0.02
# HELP stolentee_queue_depth Jobs queued (ready or waiting for a retry).
# TYPE stolentee_queue_depth gauge
stolentee_queue_depth 27.0
# HELP stolentee_queue_ready Queued jobs that may run now.
# TYPE stolentee_queue_ready gauge
stolentee_queue_ready 25.0
# HELP stolentee_jobs_in_flight Jobs being processed.
# TYPE stolentee_jobs_in_flight gauge
stolentee_jobs_in_flight 4.0
"""


def page(cpu_s: float, rss_bytes: float, depth: int, in_flight: int) -> str:
    return (
        EXPOSITION.replace("12.5", str(cpu_s))
        .replace("5.36870912e+08", str(rss_bytes))
        .replace("stolentee_queue_depth 27.0", f"stolentee_queue_depth {depth}")
        .replace("stolentee_jobs_in_flight 4.0", f"stolentee_jobs_in_flight {in_flight}")
    )


def test_parse_a_real_exposition() -> None:
    assert parse_metrics(EXPOSITION) == Scrape(
        cpu_seconds=12.5, resident_memory_bytes=536870912.0, queue_depth=27.0, in_flight=4.0
    )


def test_parse_what_prometheus_client_itself_writes() -> None:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)  # the real process_* metrics of this process (Linux)
    Gauge(sources.QUEUE_DEPTH, "Jobs queued.", registry=registry).set(3)
    Gauge(sources.JOBS_IN_FLIGHT, "Jobs being processed.", registry=registry).set(2)
    Counter("stolentee_removals", "Removals.", ["provider"], registry=registry).labels("a").inc()
    scrape = parse_metrics(generate_latest(registry).decode())
    assert (scrape.queue_depth, scrape.in_flight) == (3, 2)
    assert scrape.cpu_seconds is not None and scrape.cpu_seconds > 0
    assert scrape.resident_memory_bytes is not None and scrape.resident_memory_bytes > 1e6


def test_labelled_series_are_summed_and_absent_metrics_are_none() -> None:
    text = 'stolentee_queue_depth{kind="design"} 5\nstolentee_queue_depth{kind="callback"} 2\n'
    assert parse_metrics(text) == Scrape(queue_depth=7.0)


def test_not_prometheus_text_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="invalid metric name"):
        parse_metrics("<html>login</html>")


def test_metric_names_are_those_the_exporter_writes() -> None:
    metrics = pytest.importorskip("stolentee.metrics")
    assert sources.QUEUE_DEPTH == metrics.QUEUE_DEPTH
    assert sources.JOBS_IN_FLIGHT == metrics.JOBS_IN_FLIGHT


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def test_source_reads_cpu_rate_memory_and_queue_over_http(server: LocalServer) -> None:
    pages = {"/api-a": page(10.0, 0.5 * GB, 30, 2), "/api-b": page(20.0, 0.25 * GB, 31, 2)}
    server.responder = lambda request: Reply(200, pages.get(request.path, ""))
    clock = Clock()
    source = MetricsSource(
        urls={"api": [server.url("/api-a"), server.url("/api-b")], "worker": []},
        sizes={"api": ReplicaSize(vcpus=2, memory_bytes=1 * GB), "worker": ReplicaSize(1, GB)},
        token="scrape-secret",
        clock=clock,
    )
    try:
        first = source.read()
        # one read gives no CPU rate; memory is averaged (50% and 25%); the queue is the largest
        # figure read, for every service (the worker has no URL of its own)
        assert first["api"] == Sample(
            at_s=1000.0, cpu_percent=None, memory_percent=37.5, queue_depth=31, in_flight=2
        )
        assert first["worker"] == Sample(at_s=1000.0, queue_depth=31, in_flight=2)
        clock.now += 30
        pages["/api-a"] = page(10.0 + 30 * 1.5, 0.5 * GB, 12, 1)  # 1.5 of 2 vCPUs: 75%
        pages["/api-b"] = page(20.0 + 30 * 0.5, 0.5 * GB, 12, 1)  # 0.5 of 2 vCPUs: 25%
        second = source.read()
        assert second["api"].cpu_percent == pytest.approx(50.0)
        assert second["api"].memory_percent == pytest.approx(50.0)
        assert (second["worker"].queue_depth, second["worker"].in_flight) == (12, 1)
    finally:
        source.close()
    assert {r.headers["authorization"] for r in server.requests} == {"Bearer scrape-secret"}
    assert {r.method for r in server.requests} == {"GET"}


def test_unreachable_failing_and_restarted_targets(server: LocalServer) -> None:
    replies = {"/ok": Reply(200, page(100.0, 0.1 * GB, 3, 0)), "/500": Reply(500, "boom")}

    def respond(request: Recorded) -> Reply:
        return replies.get(request.path, Reply(200, "<html>not metrics</html>"))

    server.responder = respond
    clock = Clock()
    source = MetricsSource(
        urls={
            "api": [
                server.url("/ok"),
                server.url("/500"),
                server.url("/html"),
                "http://127.0.0.1:9/metrics",  # nothing listens on the discard port
            ]
        },
        sizes={"api": ReplicaSize(vcpus=1, memory_bytes=GB)},
        timeout_s=2,
        clock=clock,
    )
    try:
        first = source.read()["api"]
        assert first.memory_percent == pytest.approx(10.0)
        assert first.queue_depth == 3
        clock.now += 60
        replies["/ok"] = Reply(200, page(1.0, 0.1 * GB, 3, 0))  # the counter went back: restart
        assert source.read()["api"].cpu_percent is None
        clock.now += 60
        replies["/ok"] = Reply(200, page(31.0, 0.1 * GB, 3, 0))
        assert source.read()["api"].cpu_percent == pytest.approx(50.0)
        replies.clear()
        nothing = source.read()["api"]  # nobody answers: a sample without figures
        assert nothing == Sample(at_s=clock.now)
    finally:
        source.close()


def test_memory_source_hands_out_ticks_in_order() -> None:
    source = MemorySource([{"api": Sample(at_s=1)}, {"api": Sample(at_s=2)}])
    source.push({"worker": Sample(at_s=3)})
    assert [source.read(), source.read(), source.read(), source.read()] == [
        {"api": Sample(at_s=1)},
        {"api": Sample(at_s=2)},
        {"worker": Sample(at_s=3)},
        {},
    ]
    assert source.remaining == 0
