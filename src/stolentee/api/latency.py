"""Latency per route over the last hour, in this process, for the ops dashboard.

Prometheus' histograms count since the process started; a dashboard wants "the last hour".
:class:`RouteLatency` keeps one histogram per minute and per (method, route template), with the
buckets of ``stolentee_http_request_duration_seconds``, for ``window_minutes``; a percentile is
read from the sum of the minutes in the window, interpolated inside its bucket as Prometheus'
``histogram_quantile`` does. Recording is a dict lookup and a bisect, under a lock (the HTTP
middleware calls it on the event loop; scrapes of the dashboard read it from a thread).

With ``STOLENTEE_HTTP_WORKERS > 1`` each worker keeps its own window: the dashboard shows the
worker that answered. Prometheus (``deploy/prometheus/recording.yml``) has the fleet's view.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stolentee.metrics import HTTP_BUCKETS

Route = tuple[str, str]  # (method, route template)


@dataclass(frozen=True, slots=True)
class RouteFigures:
    method: str
    route: str
    requests: int
    p50_ms: float | None
    p95_ms: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "route": self.route,
            "requests": self.requests,
            "p50Ms": None if self.p50_ms is None else round(self.p50_ms, 1),
            "p95Ms": None if self.p95_ms is None else round(self.p95_ms, 1),
        }


class RouteLatency:
    def __init__(
        self,
        *,
        window_minutes: int = 60,
        buckets: tuple[float, ...] = HTTP_BUCKETS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.window_minutes = window_minutes
        self._bounds = buckets  # upper bounds in seconds; one more bucket for +Inf
        self._clock = clock
        self._lock = threading.Lock()
        self._minutes: dict[int, dict[Route, list[int]]] = {}

    def observe(self, method: str, route: str, seconds: float) -> None:
        minute = int(self._clock() // 60)
        index = bisect.bisect_left(self._bounds, seconds)
        with self._lock:
            routes = self._minutes.get(minute)
            if routes is None:
                routes = self._minutes[minute] = {}
                self._forget_before(minute - self.window_minutes + 1)
            counts = routes.get((method, route))
            if counts is None:
                counts = routes[(method, route)] = [0] * (len(self._bounds) + 1)
            counts[index] += 1

    def _forget_before(self, minute: int) -> None:
        for old in [m for m in self._minutes if m < minute]:
            del self._minutes[old]

    def figures(self) -> list[RouteFigures]:
        """Every route seen in the window, slowest p95 first."""
        first = int(self._clock() // 60) - self.window_minutes + 1
        totals: dict[Route, list[int]] = {}
        with self._lock:
            for minute, routes in self._minutes.items():
                if minute < first:
                    continue
                for route, counts in routes.items():
                    total = totals.setdefault(route, [0] * len(counts))
                    for i, count in enumerate(counts):
                        total[i] += count
        figures = [
            RouteFigures(
                method=method,
                route=route,
                requests=sum(counts),
                p50_ms=self._quantile(counts, 0.50),
                p95_ms=self._quantile(counts, 0.95),
            )
            for (method, route), counts in totals.items()
        ]
        return sorted(figures, key=lambda f: (-(f.p95_ms or 0.0), f.route, f.method))

    def _quantile(self, counts: list[int], q: float) -> float | None:
        """Milliseconds at quantile ``q``, linear inside the bucket it falls in; a quantile in
        the open last bucket is reported as the highest finite bound."""
        total = sum(counts)
        if total == 0:
            return None
        rank = q * total
        seen = 0
        for i, count in enumerate(counts):
            if seen + count >= rank and count > 0:
                if i == len(self._bounds):
                    return self._bounds[-1] * 1000
                lower = self._bounds[i - 1] if i > 0 else 0.0
                upper = self._bounds[i]
                return (lower + (upper - lower) * (rank - seen) / count) * 1000
            seen += count
        return self._bounds[-1] * 1000
