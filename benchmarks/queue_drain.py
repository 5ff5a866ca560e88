"""Queue drain benchmark: a backlog of small designs through 1, 2 and 4 worker processes.

Builds ``--designs`` small uploads (generated logos of 0.1-0.25 MP on plain backgrounds, which
take the engine's fast colour-key path, plus ``--photo-share`` of small photos from
scikit-image's samples, which take the model), then for each worker count in ``--workers``:

1. a fresh backend (``sqlite``: data dir with SQLite, ``SqliteHuey`` and local files;
   ``redis``: a fresh PostgreSQL schema, Redis db 14 flushed, local files);
2. stores every original, design row and job exactly as ``POST /v1/designs`` does
   (``storage.put``, ``DesignStore.create``, ``JobQueue.enqueue``, ``DesignStore.attach_job``);
3. spawns W ``stolentee worker --concurrency C`` processes and polls ``JobQueue.figures()``
   until every job is ``done`` or ``failed``, then checks every design got its cutout file.

Start-up (spawn to the first lease) is reported apart from the drain (first lease to the last
job finished, from the jobs table). Queue overhead compares the per-job drain time of one worker
process at concurrency 1 with ``process_design`` called in a loop in this process (same storage
backend, same engine), and splits it into time inside a job beyond the pipeline and time
between jobs. Exits 1 when a job failed, never finished or lost its output.

The **queue floor** (``--floor-jobs``, per backend) is the queue's own cost with nothing else:
the real worker (``build_queue``, ``build_handlers``, ``Worker`` at concurrency 1) draining a
backlog in this process with ``process_design`` replaced by a stub that returns a fixed outcome.
It counts the SQL statements and transactions of the worker's threads per job (SQLAlchemy
events) and measures wall and CPU time per job: counts that noise on a shared machine cannot move.

The **in-process overhead** (``--inproc``) is the same in-process worker thread with the real
pipeline on the ``--designs`` uploads: the consumer thread's CPU time per job minus the CPU time
of ``process_design`` in that thread (receive, lease and design read, handler glue, completion
and design result). Thread CPU times of one thread, so a busy machine moves them far less than
the wall times of separate processes.

    .venv/bin/python benchmarks/queue_drain.py                       # sqlite, 500 designs
    .venv/bin/python benchmarks/queue_drain.py --backend all --designs 100
"""

from __future__ import annotations

import argparse
import getpass
import io
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import redis
import skimage
from PIL import Image, ImageDraw
from sqlalchemy import create_engine, event, select, text

from stolentee.config import DatabaseSettings, QueueSettings, ServiceSettings, Settings
from stolentee.db import migrate
from stolentee.db.engine import Database
from stolentee.db.models import Design, Job
from stolentee.designs import jobs as job_handlers
from stolentee.designs.callbacks import CallbackSender
from stolentee.designs.jobs import PERMANENT_ERRORS, build_handlers
from stolentee.designs.pipeline import DesignOutcome, design_options, process_design
from stolentee.designs.store import DesignStore, new_design_id
from stolentee.jobs.queue import JobQueue
from stolentee.jobs.transport import build_transport
from stolentee.jobs.worker import Worker
from stolentee.removal.base import RemovalOptions, Remover
from stolentee.removal.engine import RemovalEngine
from stolentee.runtime import build_queue
from stolentee.storage.base import Storage
from stolentee.storage.factory import build_storage

SKIMAGE_DATA = Path(str(skimage.__file__)).parent / "data"
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png")
JOB_KIND = "design"  # what POST /v1/designs enqueues
OWNER = "queue-benchmark"
POLL_S = 0.1
BACKENDS = ("sqlite", "redis")


@dataclass(frozen=True, slots=True)
class Upload:
    name: str
    data: bytes
    image_format: str  # Pillow's name: PNG or JPEG
    width: int
    height: int

    @property
    def extension(self) -> str:
        return "png" if self.image_format == "PNG" else "jpg"

    @property
    def content_type(self) -> str:
        return "image/png" if self.image_format == "PNG" else "image/jpeg"


@dataclass(slots=True)
class DrainResult:
    backend: str
    workers: int
    concurrency: int
    jobs: int
    upload_ms: float = 0.0  # per design: original stored + design row
    enqueue_ms: float = 0.0  # per design: JobQueue.enqueue + attach_job
    startup_s: float = 0.0  # workers spawned -> every one ready (before any job exists)
    first_lease_s: float = 0.0  # first enqueue -> first job leased
    drain_s: float = 0.0  # first enqueue -> last job finished
    worker_cpu_s: float = 0.0  # CPU time of all worker processes during the drain
    other_cpu_s: float = 0.0  # CPU time of everything else on the machine meanwhile
    done: int = 0
    failed: int = 0
    unfinished: int = 0
    retried: int = 0  # jobs that needed more than one attempt
    reaped: int = 0  # jobs whose lease expired at least once
    missing_outputs: int = 0
    in_job_ms: float = 0.0  # mean lease -> complete per job
    gap_ms: float = 0.0  # mean idle time of a worker thread between two of its jobs
    methods: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    @property
    def per_job_ms(self) -> float:
        return self.drain_s * 1000 / self.jobs

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.drain_s if self.drain_s > 0 else 0.0

    @property
    def worker_cpu_ms(self) -> float:
        return self.worker_cpu_s * 1000 / self.jobs

    @property
    def cores_busy(self) -> float:
        return self.worker_cpu_s / self.drain_s if self.drain_s > 0 else 0.0

    @property
    def other_cores(self) -> float:
        return self.other_cpu_s / self.drain_s if self.drain_s > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.unfinished == 0 and self.missing_outputs == 0


# --- inputs -----------------------------------------------------------------------------------


def _palette_colour(rng: random.Random, avoid: tuple[int, int, int]) -> tuple[int, int, int]:
    while True:
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        if sum(abs(a - b) for a, b in zip(colour, avoid, strict=True)) > 240:
            return colour


def make_logo(rng: random.Random, index: int) -> Upload:
    """A flat-colour logo: 2-4 filled shapes well inside a plain background."""
    megapixels = rng.uniform(0.10, 0.25)
    aspect = rng.uniform(0.75, 1.33)
    width = round((megapixels * 1e6 * aspect) ** 0.5)
    height = round(megapixels * 1e6 / width)
    background = rng.choice([(255, 255, 255), (250, 248, 240), (20, 20, 24), (235, 235, 235)])
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = width // 6, height // 6, width * 5 // 6, height * 5 // 6
    for _ in range(rng.randint(2, 4)):
        x0, x1 = sorted(rng.randint(left, right) for _ in range(2))
        y0, y1 = sorted(rng.randint(top, bottom) for _ in range(2))
        x1, y1 = max(x1, x0 + 12), max(y1, y0 + 12)
        colour = _palette_colour(rng, background)
        shape = rng.choice(("ellipse", "rectangle", "triangle"))
        if shape == "ellipse":
            draw.ellipse([x0, y0, x1, y1], fill=colour)
        elif shape == "rectangle":
            draw.rectangle([x0, y0, x1, y1], fill=colour)
        else:
            draw.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return Upload(f"logo-{index}.png", buffer.getvalue(), "PNG", width, height)


def make_photo(rng: random.Random, index: int, sources: list[Image.Image]) -> Upload:
    """A 0.1-0.25 MP JPEG crop of one of scikit-image's sample photos."""
    source = sources[index % len(sources)]
    crop = rng.uniform(0.8, 1.0)
    cw, ch = round(source.width * crop), round(source.height * crop)
    x0, y0 = rng.randint(0, source.width - cw), rng.randint(0, source.height - ch)
    scale = (rng.uniform(0.10, 0.25) * 1e6 / (cw * ch)) ** 0.5
    size = (max(1, round(cw * scale)), max(1, round(ch * scale)))
    photo = source.crop((x0, y0, x0 + cw, y0 + ch)).resize(size)
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=90)
    return Upload(f"photo-{index}.jpg", buffer.getvalue(), "JPEG", *size)


def make_uploads(count: int, photo_share: float, seed: int) -> list[Upload]:
    rng = random.Random(seed)  # noqa: S311 - reproducible pictures, not secrets
    photos = round(count * photo_share)
    sources = [Image.open(SKIMAGE_DATA / name).convert("RGB") for name in PHOTOS] if photos else []
    # Photos spread evenly through the backlog rather than bunched at one end.
    photo_slots = {round(i * count / photos) for i in range(photos)} if photos else set()
    return [
        make_photo(rng, index, sources) if index in photo_slots else make_logo(rng, index)
        for index in range(count)
    ]


# --- backends ---------------------------------------------------------------------------------


def app_environment() -> dict[str, str]:
    """This shell's environment without any stolentee setting that could leak into workers."""
    prefixes = ("STOLENTEE_", "DATABASE_", "REDIS_", "R2_", "STORAGE_", "REMBG_", "REMOVEBG_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


@contextmanager
def fresh_backend(
    backend: str, data_dir: Path, args: argparse.Namespace
) -> Iterator[dict[str, str]]:
    """Environment overrides for one run on a fresh backend; cleaned up afterwards."""
    overrides = {"STOLENTEE_DATA_DIR": str(data_dir), "STOLENTEE_LOG_LEVEL": "warning"}
    if backend == "sqlite":
        yield overrides
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
    cache = redis.Redis.from_url(args.redis_url)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    cache.flushdb()
    separator = "&" if "?" in args.postgres_url else "?"
    try:
        yield {
            **overrides,
            "DATABASE_URL": f"{args.postgres_url}{separator}options=-csearch_path%3D{schema}",
            "REDIS_URL": args.redis_url,
        }
    finally:
        cache.flushdb()
        cache.close()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def settings_for(overrides: dict[str, str]) -> Settings:
    """This process's settings from the workers' variables (and nothing else from the shell)."""
    return Settings(
        service=ServiceSettings.model_validate(overrides),
        database=DatabaseSettings.model_validate(overrides),
        queue=QueueSettings.model_validate(overrides),
    )


# --- the direct baseline ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DirectResult:
    wall_ms: float  # per job
    cpu_ms: float  # per job, every thread of this process (OpenCV's pool included)
    methods: Counter[str]


def run_direct(uploads: list[Upload], data_dir: Path) -> DirectResult:
    """``process_design`` over every upload in one thread, after one warm-up call."""
    settings = settings_for({"STOLENTEE_DATA_DIR": str(data_dir)})
    storage = build_storage(settings)
    engine = RemovalEngine(settings=settings.engine)
    options = design_options("auto", "png")
    keys = []
    for index, upload in enumerate(uploads):
        key = f"uploads/{index}/original.{upload.extension}"
        storage.put(key, upload.data, content_type=upload.content_type)
        keys.append(key)
    warm_up = make_logo(random.Random(-1), -1)  # noqa: S311 - a picture, not a secret
    storage.put("uploads/warm-up.png", warm_up.data, content_type=warm_up.content_type)
    process_design(
        storage=storage, remover=engine, original_key="uploads/warm-up.png", options=options
    )
    methods: Counter[str] = Counter()
    started, cpu_started = time.perf_counter(), time.process_time()
    for key in keys:
        outcome = process_design(storage=storage, remover=engine, original_key=key, options=options)
        methods[outcome.method] += 1
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    engine.close()
    return DirectResult(elapsed * 1000 / len(uploads), cpu * 1000 / len(uploads), methods)


# --- one queue run ----------------------------------------------------------------------------


def store_uploads(storage: Storage, designs: DesignStore, uploads: list[Upload]) -> list[str]:
    """The upload half of ``POST /v1/designs``: the original and the design row."""
    options = design_options("auto", "png")
    design_ids = []
    for upload in uploads:
        design_id = new_design_id()
        original_key = f"uploads/{design_id}/original.{upload.extension}"
        storage.put(original_key, upload.data, content_type=upload.content_type)
        designs.create(
            design_id=design_id,
            owner=OWNER,
            original_key=original_key,
            original_content_type=upload.content_type,
            original_width=upload.width,
            original_height=upload.height,
            kind=options.kind.value,
            output_format=options.format.value,
            idempotency_key=None,
        )
        design_ids.append(design_id)
    return design_ids


def enqueue_designs(designs: DesignStore, queue: JobQueue, design_ids: list[str]) -> None:
    """The queue half of ``POST /v1/designs``: the job, then the design's link to it."""
    for design_id in design_ids:
        job = queue.enqueue(JOB_KIND, {"design_id": design_id})
        designs.attach_job(design_id, str(job.id))


def spawn_workers(
    count: int, concurrency: int, overrides: dict[str, str], logs: Path
) -> list[subprocess.Popen[bytes]]:
    env = {**app_environment(), **overrides}
    cwd = Path(overrides["STOLENTEE_DATA_DIR"])  # no stray .env file
    processes = []
    for index in range(count):
        with (logs / f"worker-{index}.log").open("wb") as log:
            processes.append(
                subprocess.Popen(  # noqa: S603 - this interpreter running stolentee
                    [
                        sys.executable,
                        "-m",
                        "stolentee",
                        "worker",
                        "--concurrency",
                        str(concurrency),
                    ],
                    env=env,
                    cwd=cwd,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    return processes


def wait_ready(processes: list[subprocess.Popen[bytes]], logs: Path, timeout_s: float) -> bool:
    """Until every worker printed its start line (imports, database and queue done)."""
    deadline = time.monotonic() + timeout_s
    pending = set(range(len(processes)))
    while pending and time.monotonic() < deadline:
        for index in list(pending):
            if processes[index].poll() is not None:
                return False
            if " at once, queue " in (logs / f"worker-{index}.log").read_text(errors="replace"):
                pending.discard(index)
        time.sleep(0.05)
    return not pending


def machine_busy_s() -> float:
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def cpu_seconds(processes: list[subprocess.Popen[bytes]]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = psutil.Process(process.pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def stop_workers(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def analyse_jobs(
    database: Database, storage: Storage, result: DrainResult
) -> tuple[datetime | None, datetime | None]:
    """Fill the outcome counts and timings from the jobs and designs tables; returns the
    first lease and the last finish."""
    with database.session() as session:
        jobs = session.execute(
            select(
                Job.state,
                Job.started_at,
                Job.finished_at,
                Job.lease_owner,
                Job.attempts,
                Job.lost,
                Job.error,
                Job.result,
            )
        ).all()
        cutouts = session.execute(select(Design.cutout_key)).scalars().all()
    by_thread: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    in_job: list[float] = []
    for state, started, finished, owner, attempts, lost, error, outcome in jobs:
        if state == "done":
            result.done += 1
            if outcome:
                result.methods[str(outcome.get("method"))] += 1
        elif state == "failed":
            result.failed += 1
            if len(result.errors) < 5:
                result.errors.append(str(error))
        else:
            result.unfinished += 1
        result.retried += attempts > 1
        result.reaped += lost > 0
        if state == "done" and started is not None and finished is not None:
            in_job.append((finished - started).total_seconds())
            by_thread[str(owner)].append((started, finished))
    gaps = [
        (runs[i + 1][0] - runs[i][1]).total_seconds()
        for runs in (sorted(r) for r in by_thread.values())
        for i in range(len(runs) - 1)
    ]
    result.in_job_ms = statistics.fmean(in_job) * 1000 if in_job else 0.0
    result.gap_ms = statistics.fmean(gaps) * 1000 if gaps else 0.0
    result.missing_outputs = sum(1 for key in cutouts if key is None or not storage.exists(key))
    result.missing_outputs += max(0, result.jobs - len(cutouts))
    starts = [started for _, started, *_ in jobs if started is not None]
    finishes = [finished for _, _, finished, *_ in jobs if finished is not None]
    return min(starts, default=None), max(finishes, default=None)


def queue_run(
    backend: str,
    workers: int,
    uploads: list[Upload],
    root: Path,
    args: argparse.Namespace,
) -> DrainResult:
    result = DrainResult(backend, workers, args.concurrency, len(uploads))
    data_dir = root / f"{backend}-w{workers}"
    data_dir.mkdir()
    with fresh_backend(backend, data_dir, args) as overrides:
        settings = settings_for(overrides)
        database = Database(  # the database as a `stolentee worker` process has it
            settings=settings.database,
            synchronous_commit=settings.database.worker_synchronous_commit,
        )
        migrate.upgrade(database)
        transport = build_transport(settings)
        storage = build_storage(settings)
        designs = DesignStore(database=database)
        queue = JobQueue(database=database, transport=transport, settings=settings.queue)
        processes: list[subprocess.Popen[bytes]] = []
        try:
            started = time.perf_counter()
            design_ids = store_uploads(storage, designs, uploads)
            result.upload_ms = (time.perf_counter() - started) * 1000 / len(uploads)
            spawned = time.perf_counter()
            processes = spawn_workers(workers, args.concurrency, overrides, data_dir)
            if not wait_ready(processes, data_dir, timeout_s=120):
                result.errors.append("a worker did not start")
            result.startup_s = time.perf_counter() - spawned
            cpu_before, busy_before = cpu_seconds(processes), machine_busy_s()
            first_enqueue = datetime.now(UTC)
            started = time.perf_counter()
            enqueue_designs(designs, queue, design_ids)
            result.enqueue_ms = (time.perf_counter() - started) * 1000 / len(uploads)
            deadline = time.monotonic() + args.timeout_s
            while time.monotonic() < deadline:
                figures = queue.figures()
                if figures.done_total + figures.failed_total >= len(uploads):
                    break
                if all(process.poll() is not None for process in processes):
                    result.errors.append("every worker process exited")
                    break
                time.sleep(POLL_S)
            else:
                result.errors.append(f"not drained within {args.timeout_s:g} s")
            result.worker_cpu_s = cpu_seconds(processes) - cpu_before
            # This process (enqueueing, polling) counts as "other" too: it is not the workers.
            result.other_cpu_s = machine_busy_s() - busy_before - result.worker_cpu_s
        finally:
            stop_workers(processes)
        first_lease, last_finish = analyse_jobs(database, storage, result)
        if first_lease is not None and last_finish is not None:
            result.first_lease_s = (first_lease - first_enqueue).total_seconds()
            result.drain_s = (last_finish - first_enqueue).total_seconds()
        if not result.ok:
            tail = (data_dir / "worker-0.log").read_text(errors="replace")[-2000:]
            result.errors.append(f"worker-0 log tail:\n{tail}")
        transport.close()
        database.dispose()
    return result


# --- the queue's own floor ---------------------------------------------------------------------


@dataclass(slots=True)
class FloorResult:
    backend: str
    jobs: int
    wall_ms: float = 0.0  # per job, backlog drained by one in-process worker thread
    cpu_ms: float = 0.0  # per job, this process minus its main thread (which only polls)
    statements: Counter[str] = field(default_factory=Counter)  # worker threads, whole drain
    transactions: int = 0
    done: int = 0
    # --inproc (real pipeline): consumer thread CPU per job, of which process_design's, receive's
    pipeline_cpu_ms: float = 0.0
    thread_cpu_ms: float = 0.0
    receive_cpu_ms: float = 0.0


def stub_process_design(
    *, storage: Storage, remover: Remover, original_key: str, options: RemovalOptions
) -> DesignOutcome:
    """A pipeline that costs nothing: what is left of a job is the queue's own work."""
    return DesignOutcome(
        cutout_key="assets/cutouts/floor.png",
        content_type="image/png",
        width=1,
        height=1,
        kind="graphic",
        method="stub",
        provider="local",
        foreground=None,
        timings_ms={},
    )


def queue_floor(
    backend: str,
    count: int,
    root: Path,
    args: argparse.Namespace,
    uploads: list[Upload] | None = None,
) -> FloorResult:
    """Drain ``count`` design jobs through the real worker code with a stub pipeline, or with
    the real one on ``uploads`` (then ``count`` is their number)."""
    result = FloorResult(backend, count)
    data_dir = root / f"{backend}-{'inproc' if uploads else 'floor'}"
    data_dir.mkdir()
    with fresh_backend(backend, data_dir, args) as overrides:
        settings = settings_for(overrides)
        database = Database(  # the database as a `stolentee worker` process has it
            settings=settings.database,
            synchronous_commit=settings.database.worker_synchronous_commit,
        )
        migrate.upgrade(database)
        transport = build_transport(settings)
        storage = build_storage(settings)
        designs = DesignStore(database=database)
        callbacks = CallbackSender.from_settings(settings.api)
        queue = build_queue(
            database=database, transport=transport, settings=settings.queue, callbacks=callbacks
        )
        handlers = build_handlers(
            designs=designs, storage=storage, remover=RemovalEngine(settings=settings.engine),
            queue=queue, callbacks=callbacks,
        )  # fmt: skip
        worker = Worker(
            queue=queue,
            handlers=handlers,
            concurrency=1,
            permanent_errors=PERMANENT_ERRORS,
            name="floor-worker",
        )
        rows = store_uploads(storage, designs, uploads) if uploads else None
        for design_id in rows or store_design_rows(designs, count):
            job = queue.enqueue(JOB_KIND, {"design_id": design_id})
            designs.attach_job(design_id, str(job.id))
        thread_cpu = {"pipeline": 0.0, "receive": 0.0, "consumer": 0.0}
        receive, consume = worker.transport.receive, worker._consume

        def timed_receive(timeout_s: float | None = None) -> str | None:
            started = time.thread_time()
            try:
                return receive(timeout_s)
            finally:
                thread_cpu["receive"] += time.thread_time() - started

        def timed_process_design(**kwargs: Any) -> DesignOutcome:
            started = time.thread_time()
            try:
                return process_design(**kwargs)
            finally:
                thread_cpu["pipeline"] += time.thread_time() - started

        def timed_consume(slot: int) -> None:
            started = time.thread_time()
            try:
                consume(slot)
            finally:
                thread_cpu["consumer"] += time.thread_time() - started

        vars(worker)["_consume"] = timed_consume  # the consumer thread's own CPU time
        vars(worker.transport)["receive"] = timed_receive

        def on_statement(conn: object, cursor: object, statement: str, *rest: object) -> None:
            if threading.current_thread().name.startswith(worker.name):
                words = statement.split()
                table = next(
                    (words[i + 1] for i, w in enumerate(words[:-1])
                     if w.upper() in ("UPDATE", "FROM", "INTO")),
                    "",
                )  # fmt: skip
                result.statements[f"{words[0].upper()} {table}".strip()] += 1

        def on_commit(conn: object) -> None:
            if threading.current_thread().name.startswith(worker.name):
                result.transactions += 1

        event.listen(database.engine, "before_cursor_execute", on_statement)
        event.listen(database.engine, "commit", on_commit)
        # the worker's pipeline call
        vars(job_handlers)["process_design"] = (
            timed_process_design if uploads else stub_process_design
        )
        try:
            cpu_before, main_before = time.process_time(), time.thread_time()
            started = time.perf_counter()
            worker.start()
            deadline = time.monotonic() + args.timeout_s
            while worker.stats().done + worker.stats().failed_runs < count:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            elapsed = time.perf_counter() - started
            cpu = (time.process_time() - cpu_before) - (time.thread_time() - main_before)
        finally:
            vars(job_handlers)["process_design"] = process_design
            worker.stop(graceful_timeout_s=5)
            del vars(worker.transport)["receive"]
            event.remove(database.engine, "before_cursor_execute", on_statement)
            event.remove(database.engine, "commit", on_commit)
        result.pipeline_cpu_ms = thread_cpu["pipeline"] * 1000 / count
        result.thread_cpu_ms = thread_cpu["consumer"] * 1000 / count
        result.receive_cpu_ms = thread_cpu["receive"] * 1000 / count
        result.done = worker.stats().done
        result.wall_ms = elapsed * 1000 / count
        result.cpu_ms = cpu * 1000 / count
        transport.close()
        database.dispose()
    return result


def store_design_rows(designs: DesignStore, count: int) -> list[str]:
    """Design rows whose originals are never read (the stub pipeline does not look)."""
    design_ids = []
    for _ in range(count):
        design_id = new_design_id()
        designs.create(
            design_id=design_id,
            owner=OWNER,
            original_key=f"uploads/{design_id}/original.png",
            original_content_type="image/png",
            original_width=1,
            original_height=1,
            kind="auto",
            output_format="png",
            idempotency_key=None,
        )
        design_ids.append(design_id)
    return design_ids


def print_inproc(runs: list[FloorResult]) -> None:
    for f in runs:
        beyond = f.thread_cpu_ms - f.pipeline_cpu_ms
        print(
            f"{f.backend} in-process worker thread, real pipeline ({f.done}/{f.jobs} done): "
            f"thread CPU {f.thread_cpu_ms:.2f} ms/job, of which process_design "
            f"{f.pipeline_cpu_ms:.2f}; queue beyond the pipeline {beyond:.2f} ms/job = "
            f"{100 * beyond / f.pipeline_cpu_ms:.1f}% (receive {f.receive_cpu_ms:.2f}); "
            f"{f.wall_ms:.2f} ms/job wall"
        )


def print_floor(floors: list[FloorResult]) -> None:
    for f in floors:
        ranked = sorted(f.statements.items(), key=lambda item: -item[1])
        per_job = ", ".join(f"{name} {n / f.jobs:.2f}" for name, n in ranked)
        print(
            f"{f.backend} queue floor (stub pipeline, 1 in-process worker thread, {f.done}/{f.jobs}"
            f" done): {f.wall_ms:.2f} ms/job wall, {f.cpu_ms:.2f} ms/job CPU; per job: "
            f"{f.transactions / f.jobs:.2f} transactions, statements {per_job}"
        )


# --- report -----------------------------------------------------------------------------------


def print_table(results: list[DrainResult]) -> None:
    """``cores``: CPU the workers used during the drain; ``other``: everything else on the
    machine meanwhile (this process's enqueueing and polling, databases, other programs)."""
    header = (
        f"{'backend':<7} {'W':>2} {'C':>2} {'start-up s':>10} {'1st lease s':>11} "
        f"{'drain s':>8} {'jobs/s':>7} {'x W=1':>6} {'cores':>5} {'other':>5} {'CPU ms/job':>10} "
        f"{'in-job ms':>9} {'gap ms':>7} {'done':>5} {'failed':>6} {'lost':>5} {'retried':>7}"
    )
    print(header)
    print("-" * len(header))
    base: dict[str, float] = {}
    for r in results:
        base.setdefault(r.backend, r.jobs_per_s)
        speedup = r.jobs_per_s / base[r.backend] if base[r.backend] else 0.0
        lost = r.unfinished + r.missing_outputs
        print(
            f"{r.backend:<7} {r.workers:>2} {r.concurrency:>2} {r.startup_s:>10.2f} "
            f"{r.first_lease_s:>11.3f} {r.drain_s:>8.2f} {r.jobs_per_s:>7.1f} {speedup:>6.2f} "
            f"{r.cores_busy:>5.2f} {r.other_cores:>5.2f} {r.worker_cpu_ms:>10.1f} "
            f"{r.in_job_ms:>9.1f} "
            f"{r.gap_ms:>7.1f} {r.done:>5} {r.failed:>6} {lost:>5} {r.retried:>7}"
        )


def print_overhead(results: list[DrainResult], direct: DirectResult) -> None:
    for r in results:
        if r.workers != 1 or r.concurrency != 1:
            continue
        wall = r.per_job_ms - direct.wall_ms
        cpu = r.worker_cpu_ms - direct.cpu_ms
        print(
            f"{r.backend}, 1 worker process at concurrency 1 vs process_design in a loop:\n"
            f"  wall: {r.per_job_ms:.2f} vs {direct.wall_ms:.2f} ms/job -> overhead "
            f"{wall:+.2f} ms/job = {100 * wall / direct.wall_ms:+.1f}% of processing time\n"
            f"  CPU:  {r.worker_cpu_ms:.2f} vs {direct.cpu_ms:.2f} ms/job -> overhead "
            f"{cpu:+.2f} ms/job = {100 * cpu / direct.cpu_ms:+.1f}% (worker processes only)\n"
            f"  where: inside a job beyond the pipeline {r.in_job_ms - direct.wall_ms:+.2f} ms "
            f"(lease commit, design read; lease time to completion time); between jobs "
            f"{r.gap_ms:.2f} ms (completion transaction, receive, lease UPDATE)\n"
            f"  API side per design: enqueue + attach_job {r.enqueue_ms:.2f} ms, original + "
            f"design row {r.upload_ms:.2f} ms"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--designs", type=int, default=500)
    parser.add_argument("--workers", default="1,2,4", help="worker process counts to run")
    parser.add_argument("--concurrency", type=int, default=1, help="threads per worker process")
    parser.add_argument("--photo-share", type=float, default=0.0, help="0-1, rest are logos")
    parser.add_argument("--backend", choices=(*BACKENDS, "all"), default="sqlite")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "STOLENTEE_TEST_POSTGRES_URL",
            f"postgresql+psycopg://{getpass.getuser()}@127.0.0.1:5432/test",
        ),
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--timeout-s", type=float, default=600, help="per run")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--floor-jobs", type=int, default=300, help="stub-pipeline jobs per backend (0: skip)"
    )
    parser.add_argument(
        "--inproc",
        action="store_true",
        help="only the in-process worker thread with the real pipeline (no processes)",
    )
    args = parser.parse_args()
    if args.designs < 1 or not 0 <= args.photo_share <= 1 or args.concurrency < 1:
        parser.error("--designs and --concurrency must be >= 1, --photo-share within 0-1")
    worker_counts = [int(n) for n in args.workers.split(",")]
    backends = list(BACKENDS) if args.backend == "all" else [args.backend]

    uploads = make_uploads(args.designs, args.photo_share, args.seed)
    megapixels = statistics.fmean(u.width * u.height / 1e6 for u in uploads)
    photos = sum(u.image_format == "JPEG" for u in uploads)
    print(
        f"designs: {len(uploads)} ({len(uploads) - photos} logos, {photos} photos), "
        f"mean {megapixels:.3f} MP; CPUs: {psutil.cpu_count()}; "
        f"workers {args.workers} x concurrency {args.concurrency}; backends: {', '.join(backends)}"
    )
    results: list[DrainResult] = []
    with tempfile.TemporaryDirectory(prefix="stolentee-queue-") as tmp:
        root = Path(tmp)
        if args.inproc:
            if args.floor_jobs > 0:
                print_floor([queue_floor(b, args.floor_jobs, root, args) for b in backends])
            print_inproc([queue_floor(b, len(uploads), root, args, uploads) for b in backends])
            return 0
        direct = run_direct(uploads, root / "direct")
        print(
            f"direct process_design: {direct.wall_ms:.2f} ms/job ({1000 / direct.wall_ms:.1f} "
            f"jobs/s), CPU {direct.cpu_ms:.2f} ms/job; methods: {dict(direct.methods)}"
        )
        if args.floor_jobs > 0:
            print_floor([queue_floor(b, args.floor_jobs, root, args) for b in backends])
        for backend in backends:
            for workers in worker_counts:
                result = queue_run(backend, workers, uploads, root, args)
                results.append(result)
                print(
                    f"  {backend} W={workers}: drained {result.done + result.failed}/"
                    f"{result.jobs} in {result.drain_s:.1f} s",
                    flush=True,
                )
    print()
    print_table(results)
    print()
    print_overhead(results, direct)
    methods_seen = sum((r.methods for r in results), Counter())
    print(f"methods through the queue: {dict(methods_seen)}")
    failed = [r for r in results if not r.ok]
    for r in failed:
        print(f"{r.backend} W={r.workers}: {r.failed} failed, {r.unfinished} unfinished, "
              f"{r.missing_outputs} missing outputs")  # fmt: skip
        for error in r.errors:
            print(f"  {error}")
    print("RESULT: " + ("FAIL" if failed else "PASS"))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
