"""Where the controller's samples come from: our own Prometheus ``/metrics``, or memory (tests).

:class:`MetricsSource` reads the text exposition of every replica it knows (per-process scrape,
as ``stolentee.metrics`` serves it) and turns it into one :class:`~stolentee.scaling.policy.Sample`
per service:

* CPU % = the rate of ``process_cpu_seconds_total`` between two reads of the same URL, divided by
  the replica's vCPUs (so the first read of a URL has no CPU figure);
* memory % = ``process_resident_memory_bytes`` over the replica's memory;
* both averaged over the URLs of the service that answered;
* queue depth and in-flight come from the jobs table, so every process reports the whole queue:
  the largest figure read (from any service's URLs, or from ``queue_urls``, read for that alone)
  is used for every service. A worker service without URLs of its own is therefore scaled on the
  queue read from the API's ``/metrics``.

A URL that does not answer is skipped (and logged); a service none of whose URLs answered gets a
sample without CPU and memory figures, which the policy treats as neither high nor calm.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx
from prometheus_client.parser import text_string_to_metric_families

from stolentee.scaling.policy import Sample

log = logging.getLogger(__name__)

# Sample names as they appear in the text exposition (see stolentee.metrics).
CPU_SECONDS = "process_cpu_seconds_total"
RESIDENT_MEMORY = "process_resident_memory_bytes"
QUEUE_DEPTH = "stolentee_queue_depth"
JOBS_IN_FLIGHT = "stolentee_jobs_in_flight"
METRIC_NAMES = (CPU_SECONDS, RESIDENT_MEMORY, QUEUE_DEPTH, JOBS_IN_FLIGHT)

GB = 1024**3


class SampleSource(Protocol):
    """Gives the current sample of each service it knows about."""

    def read(self) -> dict[str, Sample]: ...


@dataclass(frozen=True, slots=True)
class Scrape:
    """The figures the autoscaler needs from one ``/metrics`` text (``None``: absent)."""

    cpu_seconds: float | None = None
    resident_memory_bytes: float | None = None
    queue_depth: float | None = None
    in_flight: float | None = None


def parse_metrics(text: str) -> Scrape:
    """The autoscaler's figures from a Prometheus text exposition; a metric with labels is summed
    over its series. Raises ``ValueError`` on text that is not the exposition format."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in METRIC_NAMES:
                totals[sample.name] = totals.get(sample.name, 0.0) + float(sample.value)
    return Scrape(
        cpu_seconds=totals.get(CPU_SECONDS),
        resident_memory_bytes=totals.get(RESIDENT_MEMORY),
        queue_depth=totals.get(QUEUE_DEPTH),
        in_flight=totals.get(JOBS_IN_FLIGHT),
    )


@dataclass(frozen=True, slots=True)
class ReplicaSize:
    """What one replica of a service may use: CPU and memory percentages are relative to it."""

    vcpus: float
    memory_bytes: float


class MetricsSource:
    """Samples from the ``/metrics`` URLs of each service's replicas (see the module docstring)."""

    def __init__(
        self,
        *,
        urls: Mapping[str, Sequence[str]],
        sizes: Mapping[str, ReplicaSize],
        queue_urls: Sequence[str] = (),
        token: str = "",
        timeout_s: float = 5.0,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        missing = [service for service in urls if service not in sizes]
        if missing:
            raise ValueError(f"no replica size for service(s) {missing}")
        self._urls = {service: tuple(found) for service, found in urls.items()}
        self._queue_urls = tuple(url for url in queue_urls if url not in self._all_urls())
        self._sizes = dict(sizes)
        headers = {"Accept": "text/plain"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = client or httpx.Client(timeout=timeout_s, follow_redirects=False)
        self._headers = headers
        self._clock = clock
        self._previous_cpu: dict[str, tuple[float, float]] = {}  # url -> (at, cpu seconds)

    def _all_urls(self) -> set[str]:
        return {url for found in self._urls.values() for url in found}

    def close(self) -> None:
        self._client.close()

    def read(self) -> dict[str, Sample]:
        scrapes: dict[str, dict[str, tuple[float, Scrape]]] = {}
        for service, urls in self._urls.items():
            scrapes[service] = {}
            for url in urls:
                scrape = self._scrape(url)
                if scrape is not None:
                    scrapes[service][url] = (self._clock(), scrape)
        everything = [scrape for found in scrapes.values() for _, scrape in found.values()]
        for url in self._queue_urls:  # read for the queue figures only
            extra = self._scrape(url)
            if extra is not None:
                everything.append(extra)
        depth = _largest(s.queue_depth for s in everything)
        in_flight = _largest(s.in_flight for s in everything)
        now = self._clock()
        samples: dict[str, Sample] = {}
        for service, found in scrapes.items():
            size = self._sizes[service]
            cpus: list[float] = []
            memories: list[float] = []
            for url, (at, scrape) in found.items():
                cpu = self._cpu_percent(url, at, scrape.cpu_seconds, size.vcpus)
                if cpu is not None:
                    cpus.append(cpu)
                if scrape.resident_memory_bytes is not None:
                    memories.append(100.0 * scrape.resident_memory_bytes / size.memory_bytes)
            samples[service] = Sample(
                at_s=now,
                cpu_percent=sum(cpus) / len(cpus) if cpus else None,
                memory_percent=sum(memories) / len(memories) if memories else None,
                queue_depth=None if depth is None else round(depth),
                in_flight=None if in_flight is None else round(in_flight),
            )
        return samples

    def _scrape(self, url: str) -> Scrape | None:
        try:
            response = self._client.get(url, headers=self._headers)
        except httpx.HTTPError as exc:
            log.warning("metrics: %s did not answer: %s", url, exc)
            return None
        if response.status_code != 200:
            log.warning("metrics: %s answered HTTP %d", url, response.status_code)
            return None
        try:
            return parse_metrics(response.text)
        except ValueError as exc:
            log.warning("metrics: %s is not Prometheus text: %s", url, exc)
            return None

    def _cpu_percent(
        self, url: str, at: float, cpu_seconds: float | None, vcpus: float
    ) -> float | None:
        if cpu_seconds is None:
            self._previous_cpu.pop(url, None)
            return None
        previous = self._previous_cpu.get(url)
        self._previous_cpu[url] = (at, cpu_seconds)
        if previous is None:
            return None
        then, before = previous
        elapsed = at - then
        if elapsed <= 0 or cpu_seconds < before:  # clock step, or the process restarted
            return None
        return 100.0 * (cpu_seconds - before) / elapsed / vcpus


def _largest(values: Iterable[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return max(known) if known else None


class MemorySource:
    """Samples handed in by a test: each :meth:`read` gives the next tick (``{}`` once spent)."""

    def __init__(self, ticks: Iterable[Mapping[str, Sample]] = ()) -> None:
        self._ticks: deque[dict[str, Sample]] = deque(dict(tick) for tick in ticks)

    def push(self, tick: Mapping[str, Sample]) -> None:
        self._ticks.append(dict(tick))

    def read(self) -> dict[str, Sample]:
        return self._ticks.popleft() if self._ticks else {}

    @property
    def remaining(self) -> int:
        return len(self._ticks)
