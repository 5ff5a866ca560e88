"""What ``load_1000_users.py --rolling-deploy`` and ``--cdn`` add in front of the service.

``--rolling-deploy`` (scaled-out shape): two API instances behind a real HAProxy (Debian's
``haproxy``; health check ``GET /readyz`` every 0.5 s, down after 2 failures, no retries), and
during the steady state every API instance and then every worker is replaced one after the
other, as a deploy does: SIGTERM to the process alone (as Kubernetes and Docker send it), wait
for it to exit, start the new one on the same port, wait until it is ready (and, for an API
instance, until HAProxy has it up again). The load's own verdicts then say whether any request
failed, any upload was lost, and whether p95 held.

``--cdn``: Varnish (Debian's ``varnish``) with ``deploy/varnish/stolentee.vcl`` in front (of
HAProxy, or of the one API instance); every user request goes through it (the API passes
through, files are cached), and its hit ratio over the run comes from ``varnishstat``.
Run from the repository root with ``PYTHONPATH=.`` (it uses the tests' HAProxy and Varnish
helpers).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fakes.haproxy import HAProxy
from tests.fakes.varnish import Varnish

HIT_RATIO_GOAL = 0.9
VARNISHSTAT = shutil.which("varnishstat") or "/usr/bin/varnishstat"


@dataclass
class Front:
    """HAProxy and/or Varnish in front of the API processes; :meth:`deploy` is the rolling
    replacement, run in a thread during the steady state."""

    procs: list[Any]  # load_1000_users.Proc
    tmp: Path
    rolling: bool
    cdn: bool
    balancer: HAProxy | None = None
    cache: Varnish | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    min_servers_up: int | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Front:
        apis = [p for p in self.procs if p.role == "api"]
        target = apis[0].port
        if self.rolling:
            (self.tmp / "haproxy").mkdir()
            self.balancer = HAProxy([p.port for p in apis], self.tmp / "haproxy").start()
            target = self.balancer.port
        if self.cdn:
            (self.tmp / "varnish").mkdir()
            self.cache = Varnish(target, self.tmp / "varnish").start()
        return self

    @property
    def url(self) -> str:
        if self.cache is not None:
            return self.cache.url
        assert self.balancer is not None
        return self.balancer.url

    def deploy(self, start_at: float) -> None:
        """Replace every API instance, then every worker, from ``start_at`` (time.time())."""
        time.sleep(max(0.0, start_at - time.time()))
        watcher = threading.Thread(target=self._watch_balancer, daemon=True)
        watcher.start()
        for proc in self.procs:
            began = time.time()
            assert proc.process is not None
            os.kill(proc.process.pid, signal.SIGTERM)
            proc.process.wait(timeout=120)
            stopped = time.time()
            proc.start()
            proc.wait_http("/readyz" if proc.role == "api" else "/metrics")
            if proc.role == "api" and self.balancer is not None:
                self.balancer.wait_up(2, timeout_s=60)
            self.events.append(
                {
                    "role": proc.role,
                    "port": proc.port,
                    "sigterm_at": began,
                    "stopped_after_s": round(stopped - began, 2),
                    "replaced_after_s": round(time.time() - began, 2),
                }
            )
            print(f"replaced {proc.role} :{proc.port} in {time.time() - began:.1f} s "
                  f"(stopped after {stopped - began:.1f} s)")  # fmt: skip
        self._stop.set()
        watcher.join()

    def _watch_balancer(self) -> None:
        while not self._stop.wait(0.25):
            if self.balancer is None:
                return
            try:
                up = self.balancer.servers_up()
            except Exception:  # noqa: BLE001, S112 - the stats page itself; the next look
                continue
            self.min_servers_up = (
                up if self.min_servers_up is None else min(self.min_servers_up, up)
            )

    def cache_figures(self) -> dict[str, Any] | None:
        if self.cache is None:
            return None
        done = subprocess.run(  # noqa: S603 - our own command line
            [VARNISHSTAT, "-n", str(self.cache.directory / "varnish"), "-1", "-j"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        counters = json.loads(done.stdout)
        counters = counters.get("counters", counters)

        def value(name: str) -> int:
            return int(counters.get(name, {}).get("value", 0))

        hits, misses = value("MAIN.cache_hit"), value("MAIN.cache_miss")
        grace = value("MAIN.cache_hit_grace")
        return {
            "hits": hits,
            "misses": misses,
            "grace_hits": grace,
            "passes": value("MAIN.s_pass"),
            "hit_ratio": round(hits / (hits + misses), 4) if hits + misses else None,
        }

    def verdicts(self) -> dict[str, dict[str, Any]]:
        verdicts: dict[str, dict[str, Any]] = {}
        if self.rolling:
            replaced = len(self.events)
            verdicts["rolling_deploy"] = {
                "goal": "every API instance and worker replaced under load, HAProxy never empty",
                "measured": f"{replaced}/{len(self.procs)} replaced; "
                + ", ".join(f"{e['role']} {e['replaced_after_s']} s" for e in self.events)
                + f"; fewest API instances up {self.min_servers_up}",
                "pass": replaced == len(self.procs) and (self.min_servers_up or 0) >= 1,
            }
        figures = self.cache_figures()
        if figures is not None:
            ratio = figures["hit_ratio"]
            verdicts["cdn_hit_ratio"] = {
                "goal": f"CDN hit ratio >= {HIT_RATIO_GOAL:.0%} on the access pattern",
                "measured": f"{figures['hits']} hits, {figures['misses']} misses "
                f"({figures['grace_hits']} from grace), {figures['passes']} passed to the API: "
                f"hit ratio {'-' if ratio is None else f'{ratio:.1%}'}",
                "pass": ratio is not None and ratio >= HIT_RATIO_GOAL,
            }
        return verdicts

    def stop(self) -> None:
        for part in (self.cache, self.balancer):
            if part is not None:
                part.stop()
