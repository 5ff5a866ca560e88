"""What the machine and the processes of a benchmark do, second by second.

A load benchmark on a shared 2-core machine measures its client as much as its server; when the
latencies jump, these samples say where the time went:

- the machine (``/proc/stat``): the share of CPU time that was user, system, I/O wait, idle and
  stolen by the hypervisor (``steal``: the VM waited for a host CPU);
- pressure stall information (``/proc/pressure/{cpu,io,memory}``): the share of each second in
  which some task waited for a CPU, for I/O, for memory;
- each named process (``/proc/PID/stat``): its CPU share;
- the client's own event loop: how late a 100 ms sleep wakes up (the client cannot send or time
  a request while its loop is late);
- the client's garbage collector: how long each full (generation 2) collection stopped it;
- the server's view (its ``/metrics``): the p95 of its own request timings in each window,
  read from the histogram's buckets (an upper bound: the bucket's edge).

Used by ``dr_drill.py --under-load``.
"""

from __future__ import annotations

import asyncio
import gc
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

_TICKS = os.sysconf("SC_CLK_TCK")
_STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
_BUCKET = re.compile(r"^stolentee_http_request_duration_seconds_bucket\{(.*)\}\s+([0-9.e+]+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def _cpu_times() -> dict[str, int]:
    with open("/proc/stat") as handle:
        values = handle.readline().split()[1:]
    return {name: int(value) for name, value in zip(_STAT_FIELDS, values, strict=False)}


def _stall_us(resource: str) -> int | None:
    """Total microseconds in which some task waited for ``resource`` (None without PSI)."""
    try:
        text = Path(f"/proc/pressure/{resource}").read_text()
    except OSError:
        return None
    return int(text.split("total=")[1].split()[0])


def _process_ticks(pids: int | list[int]) -> int | None:
    """CPU ticks (user + system, all threads) of a process, or summed over several."""
    total, seen = 0, False
    for pid in [pids] if isinstance(pids, int) else pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total, seen = total + int(fields[11]) + int(fields[12]), True
    return total if seen else None


def pids_of(command: str) -> list[int]:
    """Every process whose command name is ``command`` (a server's many processes)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name = stat.read_text().split("(", 1)[1].rsplit(")", 1)[0]
        except (OSError, IndexError):
            continue
        if name == command:
            found.append(int(stat.parent.name))
    return found


Buckets = dict[str, dict[float, float]]  # "METHOD route" (and "all") -> upper edge -> count


def _server_buckets(url: str) -> Buckets | None:
    try:
        return parse_buckets(httpx.get(f"{url}/metrics", timeout=30).text)
    except httpx.HTTPError:
        return None


def parse_buckets(text: str) -> Buckets:
    """The request-duration histogram of a /metrics page per route and summed ("all"), the
    /metrics route itself left out."""
    buckets: Buckets = {"all": {}}
    for line in text.splitlines():
        found = _BUCKET.match(line)
        if not found:
            continue
        labels = dict(_LABEL.findall(found.group(1)))
        if labels.get("route") == "/metrics":
            continue
        edge, count = float(labels["le"]), float(found.group(2))
        for name in ("all", f"{labels.get('method')} {labels.get('route')}"):
            route = buckets.setdefault(name, {})
            route[edge] = route.get(edge, 0.0) + count
    return buckets


def p95_from_buckets(before: dict[float, float], after: dict[float, float]) -> float | None:
    """The upper edge of the bucket that holds the 95th percentile of the requests in between."""
    edges = sorted(after)
    counts = [after[edge] - before.get(edge, 0.0) for edge in edges]
    if not counts or counts[-1] < 20:
        return None
    for edge, count in zip(edges, counts, strict=True):
        if count >= 0.95 * counts[-1]:
            return edge
    return None


@dataclass
class MachineProbe:
    """Samples every ``interval_s`` in a thread; ``pids`` maps names to the processes to watch,
    a pid or a list of them (a callable, so a process started later is watched from then on)."""

    pids: Callable[[], dict[str, int | list[int]]]
    server_url: str | None = None
    interval_s: float = 1.0
    samples: list[dict[str, Any]] = field(default_factory=list)
    loop_lag: list[tuple[float, float]] = field(default_factory=list)
    gc_pauses: list[tuple[float, float]] = field(default_factory=list)  # (start, seconds)
    _gc_started: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> MachineProbe:
        gc.callbacks.append(self._on_gc)
        self._thread = threading.Thread(target=self._run, name="machine-probe", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._gc_started = time.monotonic()
        else:
            self.gc_pauses.append((self._gc_started, time.monotonic() - self._gc_started))

    def _run(self) -> None:
        last = self._read()
        scraped_at = 0.0
        while not self._stop.wait(self.interval_s):
            now = self._read()
            sample: dict[str, Any] = {"t": now["t"]}
            cpu = {k: now["cpu"][k] - last["cpu"][k] for k in _STAT_FIELDS}
            total = sum(cpu.values()) or 1
            for name in ("user", "system", "iowait", "idle", "steal"):
                sample[name] = cpu[name] / total
            span_us = (now["t"] - last["t"]) * 1e6
            for resource, stalled in now["psi"].items():
                if stalled is not None and last["psi"].get(resource) is not None:
                    sample[f"psi_{resource}"] = (stalled - last["psi"][resource]) / span_us
            for name, ticks in now["procs"].items():
                if ticks is not None and last["procs"].get(name) is not None:
                    # max: a process of a group that ended takes its ticks with it
                    seconds = max(0, ticks - last["procs"][name]) / _TICKS
                    sample[f"cpu_{name}"] = seconds / (now["t"] - last["t"])
            if self.server_url and now["t"] - scraped_at >= 5:
                asked = time.monotonic()
                sample["server_buckets"] = _server_buckets(self.server_url)
                sample["scrape_s"] = time.monotonic() - asked
                scraped_at = now["t"]
            self.samples.append(sample)
            last = now

    def _read(self) -> dict[str, Any]:
        return {
            "t": time.monotonic(),
            "cpu": _cpu_times(),
            "psi": {resource: _stall_us(resource) for resource in ("cpu", "io", "memory")},
            "procs": {name: _process_ticks(pid) for name, pid in self.pids().items()},
        }

    async def watch_loop(self, stop: asyncio.Event, period_s: float = 0.1) -> None:
        """Run in the client's event loop: how late each ``period_s`` sleep wakes."""
        while not stop.is_set():
            asked = time.monotonic()
            await asyncio.sleep(period_s)
            self.loop_lag.append((asked, time.monotonic() - asked - period_s))

    def server_p95(self, low: float, high: float, route: str = "all") -> float | None:
        """The server's p95 (a bucket's upper edge) for ``route`` between the scrapes around
        [low, high); None with fewer than 20 requests or no scrape on either side."""
        scrapes = [s for s in self.samples if s.get("server_buckets")]
        before = [s["server_buckets"] for s in scrapes if s["t"] <= low]
        after = [s["server_buckets"] for s in scrapes if s["t"] >= high]
        if not before or not after or route not in after[0]:
            return None
        return p95_from_buckets(before[-1].get(route, {}), after[0][route])

    def window(self, low: float, high: float) -> dict[str, float]:
        """Means (CPU shares, stalls), the worst loop lag and the server's p95 in [low, high)."""
        inside = [s for s in self.samples if low <= s["t"] < high]
        figures: dict[str, float] = {}
        names = {k for s in inside for k in s if k not in ("t", "server_buckets", "scrape_s")}
        for name in sorted(names):
            values = [s[name] for s in inside if name in s]
            figures[name] = sum(values) / len(values)
        lags = [lag for at, lag in self.loop_lag if low <= at < high]
        if lags:
            figures["loop_lag_max_s"] = max(lags)
        pauses = [pause for at, pause in self.gc_pauses if low <= at < high]
        if pauses:
            figures["gc_full_max_s"] = max(pauses)
        p95 = self.server_p95(low, high)
        if p95 is not None:
            figures["server_p95_le_s"] = p95
        scrape_times = [s["scrape_s"] for s in inside if "scrape_s" in s]
        if scrape_times:
            figures["scrape_max_s"] = max(scrape_times)
        return figures
