"""The ops dashboard at the size of a busy month: ``GET /v1/ops/summary`` latency and ``/ops``
render time, with ``GET /health/detailed`` (the JSON the dashboard replaces) beside it.

A data directory is filled with 30 days of generated rows: the removal statistics of three
providers (self-hosted engine, the removal service, Remove.bg; standard and premium), 90,000
finished jobs (3,000 designs a day) with a few failed and queued, and 300 health notices. Then
``stolentee serve --no-worker`` runs on it with an API key, 20 routes get traffic (the latency
window), and:

1. ``/v1/ops/summary`` and ``/health/detailed`` are each fetched N times, alternating, over
   loopback (p50, p95, ratio);
2. Debian's Chromium (Playwright) loads ``/ops`` with the key stored, R times; the page records
   the time from navigation start to its charts drawn (``body[data-render-ms]``).

    PYTHONPATH=. .venv/bin/python benchmarks/ops_dashboard.py            # N=300, R=20

Goals (issue "Operations"): the summary < 50 ms p95; the page renders in < 1 s. Results:
benchmarks/ops_dashboard.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import insert
from tests.fakes.browser import chromium_page, require_chromium
from tests.fakes.processes import StolenteeProcess

from stolentee.config import ServiceSettings, Settings
from stolentee.db import migrate
from stolentee.db.engine import Database
from stolentee.db.models import AlertNotice, Job
from stolentee.removal.base import RemovalEvent
from stolentee.removal.stats.store import RemovalStatsStore

KEY = "st_ops_benchmark_key"
DAYS = 30
DESIGNS_PER_DAY = 3000
ROUTES = [
    "/health",
    "/livez",
    "/readyz",
    "/v1/designs",
    "/v1/costs/report",
    "/v1/stats/removal",
    "/metrics",
    "/",
    "/ops",
    "/web/app.js",
    "/web/ops.js",
    "/web/style.css",
    "/web/ops.css",
    "/uploads/missing.png",
    "/assets/missing.png",
    "/v1/designs/missing",
    "/health/detailed",
    "/openapi.json",
    "/docs",
    "/nowhere",
]


def fill(data_dir: Path, now: datetime) -> dict[str, int]:
    database = Database(settings=Settings(service=ServiceSettings(data_dir=data_dir)).database)
    migrate.upgrade(database)
    store = RemovalStatsStore(database=database, now=lambda: now)
    events = 0
    for n in range(DAYS):
        at = now - timedelta(days=DAYS - 1 - n)
        for provider, count, charged in (
            ("local", 1800, 0.0),
            ("rembg-service", 1100, 0.0),
            ("removebg", 100, 1.0),
        ):
            for i in range(count):
                ok = i % 50 != 0
                store.record(
                    RemovalEvent(
                        provider=provider,
                        ok=ok,
                        failure_kind=None if ok else "timeout",
                        latency_ms=300.0 + (i % 40) * 25,
                        megapixels=1.2,
                        credits_charged=charged if ok else 0.0,
                        credits_avoided=0.0 if charged or not ok else 1.0,
                        premium=i % 10 == 0,
                        at=at,
                        image_kind="photo",
                    )
                )
                events += 1
    store.close()
    jobs = []
    for n in range(DAYS * DESIGNS_PER_DAY):
        created = now - timedelta(seconds=n * 86400 * DAYS / (DAYS * DESIGNS_PER_DAY))
        state = "failed" if n % 997 == 0 else "queued" if n < 5 else "done"
        jobs.append(
            {
                "id": uuid.uuid4().hex,
                "kind": "process_design",
                "payload": {"design_id": uuid.uuid4().hex},
                "state": state,
                "attempts": 1,
                "max_attempts": 5,
                "available_at": created,
                "created_at": created,
                "started_at": created + timedelta(seconds=1),
                "finished_at": None if state == "queued" else created + timedelta(seconds=3),
            }
        )
    notices = [
        {
            "component": f"removal:{'rembg-service' if n % 2 else 'removebg'}",
            "status": "fail" if n % 2 else "pass",
            "previous": "pass" if n % 2 else "fail",
            "detail": "probe failed: connection refused",
            "created_at": now - timedelta(hours=n),
            "attempts": 1,
            "next_attempt_at": now - timedelta(hours=n),
            "sent_at": now - timedelta(hours=n),
            "given_up": False,
        }
        for n in range(300)
    ]
    with database.session() as session:
        for start in range(0, len(jobs), 5000):
            session.execute(insert(Job), jobs[start : start + 5000])
        session.execute(insert(AlertNotice), notices)
    database.dispose()
    return {"events": events, "jobs": len(jobs), "notices": len(notices)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))]


def timed_gets(url: str, path: str, client: httpx.Client) -> float:
    started = time.perf_counter()
    response = client.get(url + path)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--renders", type=int, default=20)
    args = parser.parse_args()
    require_chromium()
    with tempfile.TemporaryDirectory() as root:
        data = Path(root) / "data"
        filled_at = time.perf_counter()
        sizes = fill(data, datetime.now(UTC))
        print(f"filled in {time.perf_counter() - filled_at:.0f} s: {sizes}")
        server = StolenteeProcess(
            ["serve", "--no-worker"],
            {"STOLENTEE_DATA_DIR": str(data), "STOLENTEE_API_KEYS": KEY},
            Path(root) / "serve.log",
        ).start()
        try:
            with httpx.Client(headers={"X-Api-Key": KEY}, timeout=30) as client:
                for _ in range(5):
                    for path in ROUTES:
                        client.get(server.url + path)
                summary: list[float] = []
                detailed: list[float] = []
                for _ in range(args.requests):
                    summary.append(timed_gets(server.url, "/v1/ops/summary", client))
                    detailed.append(timed_gets(server.url, "/health/detailed", client))
            renders: list[float] = []
            with chromium_page(server.url, viewport={"width": 1280, "height": 2400}) as page:
                page.add_init_script(f"localStorage.setItem('stolentee.apiKey', '{KEY}')")
                for _ in range(args.renders):
                    page.goto("/ops")
                    page.wait_for_selector("body[data-state='ready']", timeout=30_000)
                    renders.append(float(page.evaluate("document.body.dataset.renderMs")))
        finally:
            server.stop()
    s50, s95 = percentile(summary, 0.5), percentile(summary, 0.95)
    d50, d95 = percentile(detailed, 0.5), percentile(detailed, 0.95)
    print(f"machine: {platform.node()} {platform.machine()}, Python {platform.python_version()}")
    print(f"GET /v1/ops/summary   n={len(summary)}  p50 {s50:.1f} ms  p95 {s95:.1f} ms")
    print(f"GET /health/detailed  n={len(detailed)}  p50 {d50:.1f} ms  p95 {d95:.1f} ms")
    print(f"summary / detailed p95: {s95 / d95:.2f}")
    print(
        f"/ops render (navigation start to charts drawn) n={len(renders)}  "
        f"p50 {statistics.median(renders):.0f} ms  p95 {percentile(renders, 0.95):.0f} ms  "
        f"max {max(renders):.0f} ms"
    )


if __name__ == "__main__":
    main()
