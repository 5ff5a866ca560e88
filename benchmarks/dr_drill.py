"""Disaster-recovery drill, measured: back up a shop, wipe it, restore it, compare.

An embedded instance (SQLite + local files, in a temporary directory) is filled with N designs,
each a done design with a small PNG original and cutout (2 N objects), written the way the
service writes them (the store's put, the designs table). Then:

1. ``backup create`` to a local target (full), timed;
2. 100 new designs, and ``backup create`` again (incremental: what it copied, timed);
3. the instance is wiped (a new, empty data directory) and ``backup restore`` rebuilds it,
   timed: the RTO's restore part;
4. the restored instance is compared with the original: every design row and every object's
   sha256 (missing and differing counted).

    PYTHONPATH=. .venv/bin/python benchmarks/dr_drill.py --designs 10000
    PYTHONPATH=. .venv/bin/python benchmarks/dr_drill.py --litestream-rpo   # SQLite's RPO
    PYTHONPATH=. .venv/bin/python benchmarks/dr_drill.py --designs 10000 --under-load 1000
    PYTHONPATH=. .venv/bin/python benchmarks/dr_drill.py --designs 10000 \
        --postgres postgresql+psycopg://root@127.0.0.1:5432/postgres         # PostgreSQL + S3
    PYTHONPATH=. .venv/bin/python benchmarks/dr_drill.py --designs 10000 --under-load 1000 \
        --postgres postgresql+psycopg://root@127.0.0.1:5432/postgres

With ``--postgres URL`` the same runs on a PostgreSQL database of its own and SeaweedFS buckets
(store, target, restored store). With ``--under-load USERS`` the shop runs as ``stolentee serve``
and a backup is taken while USERS simulated users browse and upload: the p95 of each action
before and during, beside what the machine, the client and the server did every 5 s
(``machine_probe.py``). Results: benchmarks/dr_drill.md.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy import create_engine, text

from stolentee.backup.create import create_backup
from stolentee.backup.restore import restore_backup
from stolentee.backup.targets import open_target
from stolentee.config import DatabaseSettings, ServiceSettings, Settings, StorageSettings
from stolentee.db import migrate
from stolentee.db.engine import Database
from stolentee.db.models import Design
from stolentee.storage.factory import build_storage


@dataclass
class Shape:
    """Where an instance keeps its data: embedded (SQLite + local files under its root), or a
    PostgreSQL database and an S3 bucket (``database_url`` and ``s3`` set)."""

    database_url: str | None = None
    s3: dict[str, Any] | None = None
    names: list[str] = field(default_factory=list)

    def settings(self, root: Path) -> Settings:
        url = f"sqlite:///{root / 'stolentee.db'}"
        storage = StorageSettings()
        if self.database_url is not None and self.s3 is not None:
            name = f"drill_{uuid.uuid4().hex[:8]}"
            self.names.append(name)
            url = self._create_database(name)
            self.s3["client"].create_bucket(Bucket=name.replace("_", "-"))
            storage = StorageSettings(
                backend="s3",
                s3_endpoint=self.s3["endpoint"],
                s3_access_key_id=self.s3["access_key_id"],
                s3_secret_access_key=self.s3["secret_access_key"],
                s3_bucket_name=name.replace("_", "-"),
            )
        return Settings(
            service=ServiceSettings(data_dir=root),
            database=DatabaseSettings(url=url),
            storage=storage,
        )

    def _create_database(self, name: str) -> str:
        assert self.database_url is not None
        admin = create_engine(self.database_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return self.database_url.rsplit("/", 1)[0] + f"/{name}"

    def drop(self) -> None:
        if self.database_url is None:
            return
        admin = create_engine(self.database_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for name in self.names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


_SHAPE = Shape()


def _settings(root: Path) -> Settings:
    return _SHAPE.settings(root)


def _service_env(settings: Settings) -> dict[str, str]:
    """The variables that give ``stolentee serve`` and ``backup create`` this instance."""
    env = {
        "STOLENTEE_DATA_DIR": str(settings.service.data_dir),
        "DATABASE_URL": str(settings.database.url),
    }
    storage = settings.storage
    if storage.backend == "s3":
        env |= {
            "STORAGE_BACKEND": "s3",
            "S3_ENDPOINT": storage.s3_endpoint,
            "S3_ACCESS_KEY_ID": storage.s3_access_key_id.get_secret_value(),
            "S3_SECRET_ACCESS_KEY": storage.s3_secret_access_key.get_secret_value(),
            "S3_BUCKET_NAME": storage.s3_bucket_name,
        }
    return env


def _png(seed: int, size: int = 24) -> bytes:
    image = Image.new("RGB", (size, size), (seed % 251, (seed // 251) % 251, (seed * 7) % 251))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def populate(settings: Settings, count: int, *, first: int = 0, owner: str = "drill") -> None:
    database = Database(settings=settings.database, watchdog=False)
    storage = build_storage(settings)
    migrate.upgrade(database)
    now = datetime.now(UTC)
    rows: list[Design] = []
    for n in range(first, first + count):
        design_id = uuid.uuid4().hex
        original = f"uploads/{design_id}/original.png"
        cutout = f"assets/cutouts/{uuid.uuid4().hex}{uuid.uuid4().hex}.png"
        storage.put(original, _png(2 * n), content_type="image/png")
        storage.put(cutout, _png(2 * n + 1), content_type="image/png")
        rows.append(
            Design(
                id=design_id, owner=owner, original_key=original,
                original_content_type="image/png", original_width=24, original_height=24,
                kind="graphic", output_format="png", job_id=None, cutout_key=cutout,
                result={"status": "done"}, created_at=now, updated_at=now,
            )
        )  # fmt: skip
        if len(rows) >= 500:
            with database.session() as session:
                session.add_all(rows)
            rows = []
    if rows:
        with database.session() as session:
            session.add_all(rows)
    storage.close()
    database.dispose()


def snapshot(settings: Settings) -> tuple[dict[str, Any], dict[str, str]]:
    database = Database(settings=settings.database, watchdog=False)
    storage = build_storage(settings)
    with database.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM designs")).mappings().all()
    designs = {row["id"]: dict(row) for row in rows}
    objects = {info.key: info.sha256 for info in storage.iterate("")}
    storage.close()
    database.dispose()
    return designs, objects


def run(designs: int, root: Path) -> dict[str, Any]:
    shop, restored = _settings(root / "shop"), _settings(root / "restored")
    started = time.perf_counter()
    populate(shop, designs)
    fill_s = time.perf_counter() - started
    target_spec = f"local:{root / 'backups'}"
    if _SHAPE.s3 is not None:
        _SHAPE.s3["client"].create_bucket(Bucket="drill-backups")
        target_spec = "s3:drill-backups/nightly"
    target = open_target(shop, target_spec)
    figures: dict[str, Any] = {"designs": designs, "fill_s": fill_s}

    def backup() -> Any:
        database = Database(settings=shop.database, watchdog=False)
        storage = build_storage(shop)
        try:
            return create_backup(settings=shop, database=database, store=storage, target=target)
        finally:
            storage.close()
            database.dispose()

    started = time.perf_counter()
    full = backup()
    figures["full_s"] = time.perf_counter() - started
    figures["full_objects"] = len(full.objects)
    populate(shop, 100, first=designs)
    started = time.perf_counter()
    incremental = backup()
    figures["incremental_s"] = time.perf_counter() - started
    figures["incremental_copied"] = incremental.copied_objects
    figures["incremental_objects"] = len(incremental.objects)

    database = Database(settings=restored.database, watchdog=False)
    storage = build_storage(restored)
    started = time.perf_counter()
    restore_backup(database=database, store=storage, target=target, manifest=incremental)
    figures["restore_s"] = time.perf_counter() - started
    storage.close()
    database.dispose()

    want_designs, want_objects = snapshot(shop)
    got_designs, got_objects = snapshot(restored)
    figures["missing_designs"] = len(want_designs.keys() - got_designs.keys())
    figures["differing_designs"] = sum(
        1
        for key in want_designs.keys() & got_designs.keys()
        if want_designs[key] != got_designs[key]
    )
    figures["missing_objects"] = len(want_objects.keys() - got_objects.keys())
    figures["differing_objects"] = sum(
        1
        for key in want_objects.keys() & got_objects.keys()
        if want_objects[key] != got_objects[key]
    )
    target.close()
    return figures


LOAD_KEY = "st_drill_load_key"
# The route each action's requests reach, as the server's metrics name it.
ROUTES = {
    "cutout": "GET /assets/{key:path}", "original": "GET /uploads/{key:path}",
    "status": "GET /v1/designs/{design_id}", "list": "GET /v1/designs", "health": "GET /health",
    "health_detailed": "GET /health/detailed", "upload": "POST /v1/designs",
}  # fmt: skip
# The load test's user model (benchmarks/load_1000_users.py): think 5-15 s between actions, the
# same mix of actions; uploads are 0.4 % of actions.
ACTIONS = (
    ("cutout", 0.30), ("status", 0.20), ("list", 0.15), ("health", 0.15), ("original", 0.12),
    ("health_detailed", 0.01), ("upload", 0.004),
)  # fmt: skip


_TIMELINE_HEAD = (
    "| t (s) | client p95 | server p95 <= | client loop lag max | steal | iowait | idle "
    "| PSI cpu / io / mem | CPU server / backup / client |\n|---|---|---|---|---|---|---|---|---|"
)


def _timeline_row(when: float, p95: float, seen: dict[str, float]) -> str:
    """One 5 s window of the run: the client's p95 beside what the machine and server did."""

    def share(name: str) -> str:
        return f"{seen[name] * 100:.0f} %" if name in seen else "-"

    server = f"{seen['server_p95_le_s'] * 1000:.0f} ms" if "server_p95_le_s" in seen else "-"
    lag = f"{seen['loop_lag_max_s'] * 1000:.0f} ms" if "loop_lag_max_s" in seen else "-"
    if "gc_full_max_s" in seen:
        lag += f" (gc {seen['gc_full_max_s'] * 1000:.0f} ms)"
    psi = " / ".join(share(f"psi_{r}") for r in ("cpu", "io", "memory"))
    cpus = " / ".join(share(f"cpu_{p}") for p in ("server", "backup", "client"))
    if "cpu_postgres" in seen:
        cpus += f" (PostgreSQL {share('cpu_postgres')}, SeaweedFS {share('cpu_seaweedfs')})"
    return (
        f"| {when:+.0f} | {p95 * 1000:.0f} ms | {server} | {lag} | {share('steal')} "
        f"| {share('iowait')} | {share('idle')} | {psi} | {cpus} |"
    )


def under_load(designs: int, root: Path, *, users: int, concurrency: int) -> dict[str, Any]:
    """A backup of a shop serving ``users`` simulated users: p95 per action before and during."""
    import asyncio
    import gc
    import random
    import ssl
    import statistics

    import httpx
    from machine_probe import MachineProbe, pids_of
    from tests.fakes.processes import StolenteeProcess

    from stolentee.keys.principals import env_label

    shop = _settings(root / "shop")
    populate(shop, designs, owner=env_label(LOAD_KEY))
    _, objects = snapshot(shop)
    ids = [key.split("/")[1] for key in objects if key.startswith("uploads/")]
    cutouts = [key for key in objects if key.startswith("assets/")]
    env = {
        **_service_env(shop),
        "STOLENTEE_API_KEYS": LOAD_KEY,
        "STOLENTEE_ENV": "production",
        "STOLENTEE_RATE_LIMIT_MP_PER_MIN": "1000000",
        "STOLENTEE_LOG_LEVEL": "warning",
    }
    target = f"local:{root / 'backups'}"
    if _SHAPE.s3 is not None:
        _SHAPE.s3["client"].create_bucket(Bucket="drill-backups")
        target = "s3:drill-backups/under-load"
    server = StolenteeProcess(args=["serve"], env=env, log_path=root / "serve.log").start()
    records: list[tuple[float, str, float, bool]] = []
    windows: dict[str, tuple[float, float]] = {}
    rng = random.Random(20261207)  # noqa: S311 - a reproducible user model, not secrets
    logo = _png(99, size=64)
    watched: dict[str, int | list[int]] = {
        "server": server.process.pid if server.process else 0,
        "client": os.getpid(),
    }

    def processes() -> dict[str, int | list[int]]:
        if _SHAPE.s3 is None:
            return dict(watched)
        # The database and the object store share these cores too (PostgreSQL's backends come
        # and go with connections: looked up every time).
        return {**watched, "postgres": pids_of("postgres"), "seaweedfs": pids_of("weed")}

    probe = MachineProbe(pids=processes, server_url=server.url)

    ssl_context = ssl.create_default_context()  # one for all clients (never used: plain http)

    async def user(stop: asyncio.Event, delay: float) -> None:
        # Each user has a client of its own, as each browser has its own connections. One shared
        # client with a pool of 1,000 connections measured its own pool instead: httpcore walks
        # every connection for every request, so a short slow-down of the server grew into a
        # 10 s stall of the client (its CPU 30 -> 89 %) while the server's own p95 stayed under
        # 500 ms (benchmarks/dr_drill.md).
        await asyncio.sleep(delay)
        async with httpx.AsyncClient(
            base_url=server.url,
            headers={"X-Api-Key": LOAD_KEY},
            limits=httpx.Limits(max_connections=2, max_keepalive_connections=2),
            timeout=30,
            verify=ssl_context,
            trust_env=False,
        ) as client:
            await browse(client, stop)

    async def browse(client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(rng.uniform(5, 15))
            action = rng.choices([a for a, _ in ACTIONS], [w for _, w in ACTIONS])[0]
            started = time.monotonic()
            try:
                if action == "cutout":
                    response = await client.get(f"/{rng.choice(cutouts)}")
                elif action == "original":
                    response = await client.get(f"/uploads/{rng.choice(ids)}/original.png")
                elif action == "status":
                    response = await client.get(f"/v1/designs/{rng.choice(ids)}")
                elif action == "list":
                    response = await client.get("/v1/designs?limit=20")
                elif action == "health":
                    response = await client.get("/health")
                elif action == "health_detailed":
                    response = await client.get("/health/detailed")
                else:
                    files = {"file": ("logo.png", logo, "image/png")}
                    response = await client.post("/v1/designs", files=files)
                ok = response.status_code < 400
            except httpx.HTTPError:
                ok = False
            records.append((started, action, time.monotonic() - started, ok))

    async def drive() -> None:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(user(stop, 15 * n / users)) for n in range(users)]
        tasks.append(asyncio.create_task(probe.watch_loop(stop)))
        await asyncio.sleep(14.5)  # the ramp: (nearly) every user has made its client
        # The client's collector stays out of the measurement: its full collections walked
        # every user's client and connection, a 0.15-0.3 s stop of all 1,000 users every ~10 s
        # that the latencies charged to the server. A few minutes of cycles left uncollected
        # cost the client some memory, nothing else.
        gc.collect()
        gc.freeze()
        gc.disable()
        await asyncio.sleep(45.5)  # a baseline minute, less the ramp
        windows["baseline"] = (time.monotonic() - 45, time.monotonic())
        backup = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).with_name("stolentee")), "backup", "create",
            "--to", target, "--concurrency", str(concurrency),
            env={**os.environ, **env}, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        watched["backup"] = backup.pid
        began = time.monotonic()
        _, error = await backup.communicate()
        windows["backup"] = (began, time.monotonic())
        if backup.returncode != 0:
            raise RuntimeError(f"backup failed: {error.decode()[-2000:]}")
        await asyncio.sleep(6)  # the load goes on until the probe has read the server once more
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        gc.enable()

    probe.start()
    try:
        asyncio.run(drive())
    finally:
        probe.stop()
        server.stop()
    figures: dict[str, Any] = {"designs": designs, "users": users, "concurrency": concurrency}
    low, high = windows["baseline"][0], windows["backup"][1]
    print(_TIMELINE_HEAD)
    for second in range(int(low), int(high) + 1, 5):  # every 5 s, through the run
        times = sorted(r[2] for r in records if second <= r[0] < second + 5)
        if len(times) >= 20:
            when = second - windows["backup"][0]
            p95 = statistics.quantiles(times, n=20)[-1]
            figures[f"t{when:+06.0f}s_p95_ms"] = round(p95 * 1000)
            print(_timeline_row(when, p95, probe.window(second, second + 5)))
    for window, (low, high) in windows.items():
        inside = [r for r in records if low <= r[0] < high]
        figures[f"{window}_s"] = high - low
        figures[f"{window}_requests"] = len(inside)
        figures[f"{window}_errors"] = sum(1 for r in inside if not r[3])
        for action, _ in ACTIONS:
            times = sorted(r[2] for r in inside if r[1] == action)
            if len(times) >= 20:
                p95 = statistics.quantiles(times, n=20)[-1]
                figures[f"{window}_p95_ms_{action}"] = round(p95 * 1000, 1)
            server = probe.server_p95(low, high, ROUTES[action])
            if server is not None:
                figures[f"{window}_server_p95_le_ms_{action}"] = round(server * 1000)
    return figures


def litestream_rpo(root: Path, *, seconds: float, sync_s: float) -> dict[str, Any]:
    """Writes every 50 ms under Litestream; at a moment the disk is lost (Litestream killed
    with SIGKILL, no last sync); the replica is restored: how much before the loss is its newest
    row (the recovery point)?"""
    import os
    import signal
    import sqlite3

    from stolentee.backup.litestream import replicating, restore_point_in_time

    shop = _settings(root / "lt-shop")
    shop.backup = shop.backup.model_copy(
        update={
            "litestream": True,
            "litestream_replica": f"local:{root / 'lt-replica'}",
            "litestream_sync_interval_s": sync_s,
        }
    )
    path = shop.database.resolved_url.removeprefix("sqlite:///")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=wal")
    conn.execute("CREATE TABLE ticks (at REAL)")
    with replicating(shop) as process:
        assert process is not None
        time.sleep(2)
        deadline = time.time() + seconds
        while time.time() < deadline:
            conn.execute("INSERT INTO ticks VALUES (?)", (time.time(),))
            time.sleep(0.05)
        lost_at = time.time()
        os.kill(process.pid, signal.SIGKILL)  # the machine dies: nothing more is shipped
        process.wait()
    conn.close()
    restored = root / "lt-restored.db"
    restore_point_in_time(shop, None, restored)
    newest = sqlite3.connect(restored).execute("SELECT max(at) FROM ticks").fetchone()[0]
    return {"sync_interval_s": sync_s, "written_s": seconds, "rpo_s": lost_at - newest}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--designs", type=int, default=10_000)
    parser.add_argument(
        "--litestream-rpo", action="store_true", help="Measure Litestream's recovery point only."
    )
    parser.add_argument(
        "--under-load", type=int, metavar="USERS", help="Back up while USERS users use the shop."
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=8,
        help="With --under-load: the backup's objects at a time (`backup create --concurrency`).",
    )
    parser.add_argument(
        "--postgres",
        help="PostgreSQL + SeaweedFS shape: a server URL (a database of its own is created)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stolentee-drill-") as scratch, ExitStack() as stack:
        if args.postgres:
            from tests.fakes.seaweedfs import SeaweedFS

            (Path(scratch) / "weed").mkdir()
            weed = stack.enter_context(SeaweedFS(Path(scratch) / "weed"))
            _SHAPE.database_url = args.postgres
            _SHAPE.s3 = {
                "endpoint": weed.endpoint,
                "access_key_id": weed.access_key_id,
                "secret_access_key": weed.secret_access_key,
                "client": weed.client(),
            }
            stack.callback(_SHAPE.drop)
        if args.litestream_rpo:
            figures = litestream_rpo(Path(scratch), seconds=20, sync_s=1.0)
        elif args.under_load:
            figures = under_load(
                args.designs, Path(scratch), users=args.under_load, concurrency=args.concurrency
            )
        else:
            figures = run(args.designs, Path(scratch))
    shape = "litestream RPO" if args.litestream_rpo else "embedded shape"
    if args.postgres:
        shape = "PostgreSQL + SeaweedFS shape"
    if args.under_load:
        shape = f"{shape}, backup under {args.under_load} users"
    print(f"# dr_drill, {datetime.now(UTC):%Y-%m-%d}, {platform.node()}, {shape}")
    for key, value in figures.items():
        print(f"{key}: {value:.2f}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
    main()
