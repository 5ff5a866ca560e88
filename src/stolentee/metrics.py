"""Prometheus metrics of one process: HTTP, removals, jobs, queue, database, process.

One :class:`Metrics` per process, built at the entry point (API lifespan, worker start-up) on a
registry of its own. Counters and histograms are updated where the work happens (HTTP middleware,
the removal chain's statistics sink, the job handlers, SQLAlchemy cursor events); the queue and
pool figures are read when Prometheus scrapes (:class:`FiguresCollector`). Each process is
scraped on its own (the API at ``/metrics``, a ``stolentee worker`` at ``STOLENTEE_METRICS_PORT``):
no shared multiprocess directory to clean up, and a per-process view, which is what an autoscaler
needs. Metric names are constants here; the autoscaler reads them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import event

from stolentee.backup.history import last_backup
from stolentee.db.engine import Database
from stolentee.db.models import Job
from stolentee.jobs.heartbeat import Heartbeat
from stolentee.jobs.queue import JobQueue
from stolentee.jobs.runs import Handler, JobResult
from stolentee.removal.base import RemovalEvent, StatsSink
from stolentee.removal.providers.breaker import BreakerState
from stolentee.removal.providers.chain import ProviderChain
from stolentee.storage.diskspace import DiskSpace

if TYPE_CHECKING:
    from stolentee.storage.s3.store import S3Storage

QUEUE_DEPTH = "stolentee_queue_depth"
QUEUE_READY = "stolentee_queue_ready"
JOBS_IN_FLIGHT = "stolentee_jobs_in_flight"
QUEUE_OLDEST_AGE = "stolentee_queue_oldest_age_seconds"
JOBS_FAILED = "stolentee_jobs_failed"
BREAKER_OPEN = "stolentee_removal_breaker_open"
BREAKER_FORCED = "stolentee_removal_breaker_forced"
DISK_FREE = "stolentee_disk_free_bytes"
DISK_LOW = "stolentee_disk_low"
DISK_FLOOR = "stolentee_disk_min_free_bytes"
BACKUP_LAST_SUCCESS = "stolentee_backup_last_success_timestamp_seconds"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Latency buckets in seconds: HTTP (the seed's p95 < 500 ms), removals and jobs (< 5 minutes).
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
REMOVAL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
JOB_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
QUERY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


class Metrics:
    """Every metric of one process, on its own registry."""

    def __init__(
        self, *, registry: CollectorRegistry | None = None, multiprocess_dir: str = ""
    ) -> None:
        self.registry = registry or CollectorRegistry()
        # Several uvicorn workers behind one port: each writes its values under this directory
        # (prometheus_client's multiprocess mode) and a scrape of any of them sums them all.
        self.multiprocess_dir = multiprocess_dir
        self._scrape_time: list[Collector] = []
        ProcessCollector(registry=self.registry)  # process CPU seconds, resident memory, fds
        self.http_requests = Counter(
            "stolentee_http_requests",
            "HTTP requests by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "stolentee_http_request_duration_seconds",
            "HTTP request latency by method and route template.",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=self.registry,
        )
        self.removals = Counter(
            "stolentee_removals",
            "Removal attempts by provider, image type and outcome (ok or the failure kind).",
            ["provider", "type", "outcome"],
            registry=self.registry,
        )
        self.removal_duration = Histogram(
            "stolentee_removal_duration_seconds",
            "Latency of removal attempts by provider and outcome.",
            ["provider", "outcome"],
            buckets=REMOVAL_BUCKETS,
            registry=self.registry,
        )
        self.removal_megapixels = Counter(
            "stolentee_removal_megapixels",
            "Input megapixels of removal attempts by provider.",
            ["provider"],
            registry=self.registry,
        )
        self.job_duration = Histogram(
            "stolentee_job_duration_seconds",
            "Time a worker spent on a job, by kind and outcome.",
            ["kind", "outcome"],
            buckets=JOB_BUCKETS,
            registry=self.registry,
        )
        self.storage_operations = Counter(
            "stolentee_storage_operations",
            "S3 storage calls by operation and outcome (ok, client_error, server_error, "
            "connection_error), counted once each after the client's own retries.",
            ["operation", "outcome"],
            registry=self.registry,
        )
        self.cdn_purges = Counter(
            "stolentee_cdn_purges",
            "CDN purge jobs by backend and outcome (ok, retried, rejected).",
            ["backend", "outcome"],
            registry=self.registry,
        )
        self.cdn_purged_urls = Counter(
            "stolentee_cdn_purged_urls",
            "URLs the CDN was told to forget, by backend.",
            ["backend"],
            registry=self.registry,
        )
        self.query_duration = Histogram(
            "stolentee_db_query_duration_seconds",
            "Database statement latency (client side).",
            buckets=QUERY_BUCKETS,
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        """The Prometheus text format of everything on the registry (of every process sharing
        the multiprocess directory, when there is one)."""
        if not self.multiprocess_dir:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        for collector in self._scrape_time:  # read now, by the process that answers
            registry.register(collector)
        return generate_latest(registry)

    # --- wiring --------------------------------------------------------------------------------

    def watch(
        self,
        *,
        queue: JobQueue | None = None,
        database: Database | None = None,
        disk: DiskSpace | None = None,
        providers: ProviderChain | None = None,
    ) -> None:
        """Report the queue's, the pool's, the disks' and the removal breakers' figures at every
        scrape."""
        collector = FiguresCollector(queue=queue, database=database, disk=disk, providers=providers)
        self.registry.register(collector)
        self._scrape_time.append(collector)

    def instrument_database(self, database: Database) -> None:
        """Time every statement through SQLAlchemy's cursor events."""
        histogram = self.query_duration

        def before(conn: Any, cursor: Any, statement: Any, *args: Any) -> None:
            conn.info.setdefault("stolentee_query_started", []).append(time.perf_counter())

        def after(conn: Any, cursor: Any, statement: Any, *args: Any) -> None:
            started = conn.info.get("stolentee_query_started")
            if started:
                histogram.observe(time.perf_counter() - started.pop())

        event.listen(database.engine, "before_cursor_execute", before)
        event.listen(database.engine, "after_cursor_execute", after)

    def instrument_s3(self, store: S3Storage) -> None:
        """Count every operation of an S3 store, on boto3 and on its signed requests alike."""
        counter = self.storage_operations
        store.observe(lambda operation, outcome: counter.labels(operation, outcome).inc())

    def count_purge(self, backend: str, outcome: str, urls: int) -> None:
        """One purge job's outcome (the ``cdn_purge`` handler reports it)."""
        self.cdn_purges.labels(backend, outcome).inc()
        if outcome == "ok":
            self.cdn_purged_urls.labels(backend).inc(urls)

    def removal_sink(self, inner: StatsSink | None) -> StatsSink:
        """A statistics sink that updates the removal metrics, then hands the event on."""
        return _MetricsSink(metrics=self, inner=inner)

    def timed_handlers(self, handlers: Mapping[str, Handler]) -> dict[str, Handler]:
        """The job handlers, each timed into ``stolentee_job_duration_seconds``."""
        return {kind: self._timed(kind, handler) for kind, handler in handlers.items()}

    def _timed(self, kind: str, handler: Handler) -> Handler:
        histogram = self.job_duration

        def timed(job: Job, heartbeat: Heartbeat) -> JobResult:
            started = time.perf_counter()
            outcome = "error"
            try:
                result = handler(job, heartbeat)
                outcome = "ok"
                return result
            finally:
                histogram.labels(kind, outcome).observe(time.perf_counter() - started)

        return timed


class _MetricsSink:
    def __init__(self, *, metrics: Metrics, inner: StatsSink | None) -> None:
        self._metrics = metrics
        self._inner = inner

    def record(self, event: RemovalEvent) -> None:
        outcome = "ok" if event.ok else str(event.failure_kind or "failed")
        metrics = self._metrics
        metrics.removals.labels(event.provider, event.image_kind or "unknown", outcome).inc()
        metrics.removal_duration.labels(event.provider, outcome).observe(event.latency_ms / 1000)
        metrics.removal_megapixels.labels(event.provider).inc(event.megapixels)
        if self._inner is not None:
            self._inner.record(event)


class FiguresCollector(Collector):
    """Queue depth, in flight, oldest job age, the database pool, free disk and the removal
    providers' breakers, read at scrape time."""

    def __init__(
        self,
        *,
        queue: JobQueue | None,
        database: Database | None,
        disk: DiskSpace | None = None,
        providers: ProviderChain | None = None,
    ) -> None:
        self._queue = queue
        self._database = database
        self._disk = disk
        self._providers = providers

    def collect(self) -> Iterator[Metric]:
        if self._queue is not None:
            try:
                figures = self._queue.figures()
            except Exception:  # noqa: BLE001 - a scrape reports what it can; health says why
                figures = None
            if figures is not None:
                yield _gauge(
                    QUEUE_DEPTH, "Jobs queued (ready or waiting for a retry).", figures.depth
                )
                yield _gauge(QUEUE_READY, "Queued jobs that may run now.", figures.ready)
                yield _gauge(JOBS_IN_FLIGHT, "Jobs being processed.", figures.in_flight)
                yield _gauge(
                    QUEUE_OLDEST_AGE,
                    "Age of the longest-waiting ready job.",
                    figures.oldest_queued_age_s,
                )
                yield _gauge(
                    JOBS_FAILED,
                    "Jobs that failed for good (attempts used up or a permanent error), "
                    "in the table now.",
                    figures.failed_total,
                )
        if self._database is not None:
            pool = self._database.figures()
            for name, value in (
                ("max", pool.max),
                ("total", pool.total),
                ("idle", pool.idle),
                ("in_use", pool.in_use),
                ("waiting", pool.waiting),
            ):
                yield _gauge(
                    f"stolentee_db_pool_{name}", f"Database pool: {name} connections.", value
                )
            last = last_backup(self._database)
            if last is not None:  # absent until a first backup is recorded
                yield _gauge(
                    BACKUP_LAST_SUCCESS,
                    "When the last `stolentee backup create` finished (Unix time).",
                    last.finished_at.timestamp(),
                )
        if self._disk is not None:
            yield from _disk_gauges(self._disk)
        if self._providers is not None:
            yield from _breaker_gauges(self._providers)


def _breaker_gauges(chain: ProviderChain) -> Iterator[Metric]:
    """Per provider: is its breaker open (or half-open: a trial decides), and was it forced
    open (Remove.bg's 402 or a refused key: it will not recover by itself soon)?"""
    opened = GaugeMetricFamily(
        BREAKER_OPEN,
        "1 while a removal provider's circuit breaker is not closed (this process's view).",
        labels=["provider"],
    )
    forced = GaugeMetricFamily(
        BREAKER_FORCED,
        "1 while a provider's breaker is held open for a reason it will not recover from by "
        "itself (out of credits, key refused).",
        labels=["provider"],
    )
    for name in chain.provider_names:
        breaker = chain.breaker(name).snapshot()
        opened.add_metric([name], 0 if breaker.state is BreakerState.CLOSED else 1)
        forced.add_metric([name], 1 if breaker.forced else 0)
    yield from (opened, forced)


def _disk_gauges(disk: DiskSpace) -> Iterator[Metric]:
    try:
        volumes = disk.figures()
    except OSError:
        return
    free = GaugeMetricFamily(
        DISK_FREE, "Free bytes on the filesystem of a watched directory.", labels=["volume"]
    )
    low = GaugeMetricFamily(
        DISK_LOW, "1 while that filesystem is below STOLENTEE_MIN_FREE_DISK_MB.", labels=["volume"]
    )
    for volume in volumes:
        free.add_metric([volume.name], volume.free_bytes)
        low.add_metric([volume.name], 1 if volume.low else 0)
    floor = _gauge(DISK_FLOOR, "The free-space floor, in bytes (0: none).", disk.min_free_bytes)
    yield from (free, low, floor)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
