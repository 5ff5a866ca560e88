"""Load test: N concurrent shop users against real stolentee processes, verdicts on the goals.

Starts the service as real processes, seeds a few finished designs, then runs ``--users``
simulated users for ``--ramp-s`` (users join evenly) plus ``--duration-s`` (steady state, all
users active), waits until every design uploaded during the run is finished (``--drain-timeout-s``),
scrapes ``/metrics`` and prints per-endpoint latencies, server-side figures and a verdict per goal
(seed / issue 9): N concurrent users with zero errors; p95 < 500 ms on every non-upload endpoint;
database query p95 < 100 ms; every job done and p95 job time < 5 minutes. Exits 1 when a goal
is missed.

Shapes:

* embedded (default): one ``stolentee serve`` with its in-process worker, SQLite, SqliteHuey,
  local files;
* scaled out (``--postgres URL --redis URL``): ``stolentee serve --no-worker`` with
  ``STOLENTEE_HTTP_WORKERS=--http-workers`` plus ``--workers`` ``stolentee worker --concurrency
  --worker-concurrency`` processes; a fresh PostgreSQL schema (dropped afterwards), the Redis
  database of the URL flushed before and after (use a database nobody else uses: 14).

User model (one user = one shopper with a browser; derived from the seed: 1,000 users,
10,000 designs/month, "10-15 concurrent requests"). Each user has its own HTTP connection and
loops: one action, then a think time uniform in ``--think-s`` (5-15 s: 1,000 users make about
100 requests/s). Actions: browse a cutout under ``/assets/`` (30 %), a design's status (20 %),
the design list (15 %), ``/health`` (15 %, the shop's status badge / load balancer), an original
under ``/uploads/`` (12 %), ``/health/detailed`` (1 %); and, with ``--upload-share`` (0.4 % of
actions, about 0.4/s at 1,000 users), upload a design (``POST /v1/designs``: a generated logo
PNG, or with ``--photo-share`` a small photo), then poll it as the upload page does (0.4 s,
x1.5, at most 5 s apart) until ``done`` and fetch its cutout; ``--removebg-share`` (0.1 %) sends a
logo to ``POST /v1.0/removebg`` (preview). 0.4 uploads/s is ~1,400 an hour: the seed's
10,000 designs a month (14 an hour on average) times 100, i.e. a heavy evening peak with a wide
margin, and enough jobs in two minutes for a p95.

    .venv/bin/python benchmarks/load_1000_users.py --users 100 --duration-s 30 --ramp-s 10
    .venv/bin/python benchmarks/load_1000_users.py                     # 1,000 users, embedded
    .venv/bin/python benchmarks/load_1000_users.py \\
        --postgres postgresql+psycopg://root@127.0.0.1:5432/test --redis redis://127.0.0.1:6379/14
    PYTHONPATH=. .venv/bin/python benchmarks/load_1000_users.py --postgres ... --redis ... \\
        --rolling-deploy --cdn          # benchmarks/rolling_deploy.py; results: zero_downtime.md
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import io
import json
import math
import multiprocessing
import os
import random
import resource
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from PIL import Image, ImageDraw
from prometheus_client.parser import text_string_to_metric_families

KEY = "st_load_1000_users_benchmark_key"
STOLENTEE = str(Path(sys.executable).with_name("stolentee"))
SKIMAGE_DATA = Path(str(__import__("skimage").__file__)).parent / "data"
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png")

# Route templates, as the server's metrics label them.
ASSET = "GET /assets/{key:path}"
ORIGINAL = "GET /uploads/{key:path}"
DESIGN = "GET /v1/designs/{design_id}"
LIST = "GET /v1/designs"
HEALTH = "GET /health"
DETAILED = "GET /health/detailed"
UPLOAD = "POST /v1/designs"
REMOVEBG = "POST /v1.0/removebg"
UPLOAD_ENDPOINTS = (UPLOAD, REMOVEBG)
BROWSE_WEIGHTS = {ASSET: 30, DESIGN: 20, LIST: 15, HEALTH: 15, ORIGINAL: 12, DETAILED: 1}

P95_LIMIT_S = 0.5
DB_P95_LIMIT_S = 0.1
JOB_P95_LIMIT_S = 300.0
POLL_FIRST_S, POLL_GROWTH, POLL_MAX_S = 0.4, 1.5, 5.0  # as the upload page (web/app.js)


# --- inputs ------------------------------------------------------------------------------------


def make_logo(rng: random.Random) -> bytes:
    """A flat-colour logo of 0.1-0.3 MP: 2-4 shapes on a plain background (colour-key path)."""
    megapixels = rng.uniform(0.10, 0.30)
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
        while True:
            colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
            if sum(abs(a - b) for a, b in zip(colour, background, strict=True)) > 240:
                break
        if rng.random() < 0.5:
            draw.ellipse([x0, y0, x1, y1], fill=colour)
        else:
            draw.rectangle([x0, y0, x1, y1], fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def make_photo(rng: random.Random, sources: list[Image.Image]) -> bytes:
    """A 0.2-0.5 MP JPEG crop of one of scikit-image's sample photos (goes through the model)."""
    source = rng.choice(sources)
    crop = rng.uniform(0.8, 1.0)
    cw, ch = round(source.width * crop), round(source.height * crop)
    x0, y0 = rng.randint(0, source.width - cw), rng.randint(0, source.height - ch)
    scale = (rng.uniform(0.2, 0.5) * 1e6 / (cw * ch)) ** 0.5
    photo = source.crop((x0, y0, x0 + cw, y0 + ch)).resize((round(cw * scale), round(ch * scale)))
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=88)
    return buffer.getvalue()


def make_uploads(count: int, photo_share: float, seed: int) -> list[tuple[str, bytes]]:
    """``count`` distinct uploads (name, bytes), photos spread evenly among logos."""
    rng = random.Random(seed)  # noqa: S311 - reproducible pictures, not secrets
    photos = round(count * photo_share)
    sources = [Image.open(SKIMAGE_DATA / name).convert("RGB") for name in PHOTOS] if photos else []
    slots = {round(i * count / photos) for i in range(photos)} if photos else set()
    return [
        (f"photo-{i}.jpg", make_photo(rng, sources))
        if i in slots
        else (f"logo-{i}.png", make_logo(rng))
        for i in range(count)
    ]


# --- server processes --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_environment() -> dict[str, str]:
    """This shell's environment without any stolentee setting a developer's shell may carry."""
    prefixes = ("STOLENTEE_", "DATABASE_URL", "REDIS_URL", "REMBG_", "REMOVEBG_", "S3_", "R2_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


@dataclass
class Proc:
    role: str  # api | worker
    args: list[str]
    env: dict[str, str]
    log_path: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own command line
                [STOLENTEE, *self.args],
                env={**clean_environment(), **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_http(self, path: str, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise SystemExit(f"{self.args} exited:\n{self.log_tail()}")
            with suppress(httpx.TransportError):
                url = f"http://127.0.0.1:{self.port}{path}"
                if httpx.get(url, timeout=2, trust_env=False).status_code == 200:
                    return
            time.sleep(0.2)
        raise SystemExit(f"{self.args} not ready in {timeout_s:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def tree(self) -> list[psutil.Process]:
        if self.process is None:
            return []
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@contextmanager
def backend(args: argparse.Namespace, data_dir: Path) -> Iterator[dict[str, str]]:
    """Environment of every server process; a fresh PostgreSQL schema and Redis db when scaled."""
    env = {
        "STOLENTEE_DATA_DIR": str(data_dir),
        "STOLENTEE_ENV": "production",  # pool max 15, JSON logs
        "STOLENTEE_HOST": "127.0.0.1",
        "STOLENTEE_API_KEYS": KEY,
        "STOLENTEE_RATE_LIMIT_MP_PER_MIN": "1000000",
        "STOLENTEE_LOG_LEVEL": args.log_level,
    }
    if args.drain_s is not None:
        env["STOLENTEE_SHUTDOWN_DRAIN_S"] = str(args.drain_s)
    if not args.postgres:
        yield env
        return
    import redis
    from sqlalchemy import create_engine, text

    schema = f"load_{uuid.uuid4().hex[:12]}"
    admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
    cache = redis.Redis.from_url(args.redis)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    cache.flushdb()
    separator = "&" if "?" in args.postgres else "?"
    try:
        yield {
            **env,
            "DATABASE_URL": f"{args.postgres}{separator}options=-csearch_path%3D{schema}",
            "REDIS_URL": args.redis,
        }
    finally:
        cache.flushdb()
        cache.close()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def start_service(args: argparse.Namespace, env: dict[str, str], tmp: Path) -> list[Proc]:
    port = free_port()
    procs: list[Proc] = []
    if not args.postgres:
        procs.append(Proc("api", ["serve"], {**env, "PORT": str(port)}, tmp / "serve.log", port))
    else:
        subprocess.run(  # noqa: S603 - our own CLI: migrations once, before the processes
            [STOLENTEE, "db", "upgrade"],
            env={**clean_environment(), **env},
            check=True,
            capture_output=True,
        )
        api_env = {
            **env,
            "PORT": str(port),
            "STOLENTEE_RUN_WORKER": "false",  # `serve --no-worker`, said for N HTTP workers
            "STOLENTEE_HTTP_WORKERS": str(args.http_workers),
        }
        procs.append(Proc("api", ["serve"], api_env, tmp / "serve.log", port))
        if args.rolling_deploy:  # a second instance behind the load balancer
            second = free_port()
            procs.append(
                Proc(
                    "api", ["serve"], {**api_env, "PORT": str(second)}, tmp / "serve-2.log", second
                )
            )
        for index in range(args.workers):
            metrics_port = free_port()
            worker_env = {**env, "STOLENTEE_METRICS_PORT": str(metrics_port)}
            procs.append(
                Proc(
                    "worker",
                    ["worker", "--concurrency", str(args.worker_concurrency)],
                    worker_env,
                    tmp / f"worker-{index}.log",
                    metrics_port,
                )
            )
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.wait_http("/readyz" if proc.role == "api" else "/metrics")
    return procs


# --- server metrics ----------------------------------------------------------------------------

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_metrics(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def scrape_processes(procs: list[Proc], http_workers: int) -> dict[str, Samples]:
    """Every server process's metrics, keyed ``api:<pid>`` / ``worker:<port>``.

    With several HTTP workers behind one port each scrape reaches one of them: scrape over fresh
    connections until every one was seen, telling them apart by which process holds the server
    end of the connection (psutil; the metrics carry no pid).
    """
    found: dict[str, Samples] = {}
    for proc in procs:
        if proc.role == "worker":
            url = f"http://127.0.0.1:{proc.port}/metrics"
            found[f"worker:{proc.port}"] = parse_metrics(httpx.get(url, timeout=30).text)
            continue
        seen: set[int] = set()
        for _ in range(30 * http_workers):
            connection = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=30)
            try:
                connection.connect()
                local_port = connection.sock.getsockname()[1]
                connection.request("GET", "/metrics")
                text = connection.getresponse().read().decode()
                owner = next(
                    (
                        member.pid
                        for member in proc.tree()
                        for conn in member.net_connections(kind="tcp")
                        if conn.raddr and conn.raddr.port == local_port
                    ),
                    proc.process.pid if proc.process else 0,
                )
            finally:
                connection.close()
            found[f"api:{owner}"] = parse_metrics(text)
            seen.add(owner)
            if len(seen) >= http_workers:
                break
    return found


def histogram(
    processes: dict[str, Samples],
    before: dict[str, Samples],
    name: str,
    match: dict[str, str] | None = None,
) -> dict[float, float]:
    """Cumulative bucket counts (le -> count) of ``name``, summed over matching label sets and
    processes, minus the same at the ``before`` scrape (a delta over the load)."""
    buckets: dict[float, float] = defaultdict(float)
    for key, samples in processes.items():
        earlier = before.get(key, {})
        for (sample, labels), value in samples.items():
            if sample != f"{name}_bucket":
                continue
            label_map = dict(labels)
            if match and any(label_map.get(k) != v for k, v in match.items()):
                continue
            le = float(label_map["le"])
            buckets[le] += value - earlier.get((sample, labels), 0.0)
    return dict(sorted(buckets.items()))


def bucket_quantile(buckets: dict[float, float], q: float) -> float | None:
    """Prometheus' ``histogram_quantile``: linear within the bucket; inf past the last bound."""
    if not buckets:
        return None
    total = buckets.get(math.inf, max(buckets.values()))
    if total <= 0:
        return None
    rank = q * total
    lower, lower_count = 0.0, 0.0
    for bound, count in buckets.items():
        if count >= rank:
            if math.isinf(bound):
                return math.inf
            span = count - lower_count
            return lower + (bound - lower) * ((rank - lower_count) / span if span else 1.0)
        lower, lower_count = bound, count
    return math.inf


def histogram_count(buckets: dict[float, float]) -> int:
    return round(buckets.get(math.inf, 0.0))


def route_labels(processes: dict[str, Samples]) -> set[tuple[str, str]]:
    routes = set()
    for samples in processes.values():
        for sample, labels in samples:
            if sample == "stolentee_http_request_duration_seconds_bucket":
                label_map = dict(labels)
                routes.add((label_map["method"], label_map["route"]))
    return routes


# --- resource sampler and health monitor (threads of this process) ------------------------------


class Sampler(threading.Thread):
    """Every second: CPU seconds and RSS per role (server processes with their children, client
    processes), the machine's busy and steal time."""

    def __init__(self, procs: list[Proc]) -> None:
        super().__init__(daemon=True)
        self.procs = procs
        self.clients: list[int] = []
        self.samples: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self._cache: dict[int, psutil.Process] = {}

    def _process(self, pid: int) -> psutil.Process:
        if pid not in self._cache:
            self._cache[pid] = psutil.Process(pid)
        return self._cache[pid]

    def run(self) -> None:
        while not self.stop.is_set():
            roles: dict[str, list[psutil.Process]] = defaultdict(list)
            for proc in self.procs:
                roles[proc.role].extend(self._process(p.pid) for p in proc.tree())
            for pid in self.clients:
                with suppress(psutil.Error):
                    roles["client"].append(self._process(pid))
            with suppress(psutil.Error):
                roles["harness"].append(self._process(os.getpid()))
            sample: dict[str, Any] = {"t": time.time()}
            for role, members in roles.items():
                cpu = rss = 0.0
                for member in members:
                    with suppress(psutil.Error):
                        times = member.cpu_times()
                        cpu += times.user + times.system
                        rss += member.memory_info().rss
                sample[role] = {"cpu_s": cpu, "rss": rss}
            machine = psutil.cpu_times()
            sample["machine"] = {
                "busy_s": machine.user
                + machine.system
                + machine.nice
                + machine.irq
                + machine.softirq
                + getattr(machine, "steal", 0.0),
                "steal_s": getattr(machine, "steal", 0.0),
                "load": os.getloadavg()[0],
            }
            self.samples.append(sample)
            self.stop.wait(1.0)

    def window(self, start: float, end: float) -> dict[str, Any]:
        """Mean and peak (5 s) cores, peak RSS per role between two wall-clock times."""
        inside = [s for s in self.samples if start <= s["t"] <= end]
        if len(inside) < 2:
            return {}
        out: dict[str, Any] = {}
        elapsed = inside[-1]["t"] - inside[0]["t"]
        roles = {role for s in inside for role in s if role not in ("t", "machine")}
        for role in sorted(roles):
            series = [(s["t"], s[role]["cpu_s"], s[role]["rss"]) for s in inside if role in s]
            if len(series) < 2:
                continue
            mean = (series[-1][1] - series[0][1]) / (series[-1][0] - series[0][0])
            peak = max(
                (b[1] - a[1]) / (b[0] - a[0])
                for a, b in zip(series, series[5:], strict=False)
                if b[0] > a[0]
            ) if len(series) > 5 else mean  # fmt: skip
            out[role] = {
                "cores_mean": round(mean, 3),
                "cores_peak_5s": round(peak, 3),
                "rss_peak_mib": round(max(r for _, _, r in series) / 2**20, 1),
            }
        first, last = inside[0]["machine"], inside[-1]["machine"]
        busy = (last["busy_s"] - first["busy_s"]) / elapsed
        ours = sum(figures["cores_mean"] for figures in out.values())
        out["machine"] = {
            "cores_busy_mean": round(busy, 3),
            "other_processes_cores_mean": round(busy - ours, 3),  # other jobs on this machine
            "steal_cores_mean": round((last["steal_s"] - first["steal_s"]) / elapsed, 3),
            "load_max": round(max(s["machine"]["load"] for s in inside), 2),
            "cpu_count": psutil.cpu_count(),
        }
        return out


class Monitor(threading.Thread):
    """``/livez`` every second (its latency: event-loop lag plus the machine's scheduling) and
    ``/health/detailed`` every 5 s (pool in use / waiting / exhaustions, queue, removal gate)."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.livez: list[tuple[float, float]] = []
        self.detailed: list[dict[str, Any]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=30, trust_env=False) as client:
            tick = 0
            while not self.stop.is_set():
                started = time.perf_counter()
                with suppress(httpx.HTTPError):
                    client.get("/livez")
                    self.livez.append((time.time(), time.perf_counter() - started))
                if tick % 5 == 0:
                    with suppress(httpx.HTTPError, ValueError):
                        body = client.get("/health/detailed").json()
                        self.detailed.append(
                            {
                                "t": time.time(),
                                "status": body.get("status"),
                                "pool": body.get("database", {}).get("pool", {}),
                                "db_latency_ms": body.get("database", {}).get("latency"),
                                "queue": body.get("queue", {}),
                                "removal_gate": {
                                    k: body.get("removal", {}).get(k)
                                    for k in ("slots", "running", "waiting")
                                },
                            }
                        )
                tick += 1
                self.stop.wait(max(0.0, 1.0 - (time.perf_counter() - started)))


# --- simulated users (in client processes) -----------------------------------------------------


# endpoint, start (s after the load started), latency s, status or error, seconds the user's
# connection had been idle before this request (None for a user's first request)
Record = tuple[str, float, float, int | str, float | None]


@dataclass
class ClientConfig:
    base: str
    first_user: int
    users: int
    total_users: int
    start_at: float  # wall clock
    ramp_s: float
    duration_s: float
    drain_timeout_s: float
    think_s: tuple[float, float]
    upload_share: float
    removebg_share: float
    timeout_s: float
    designs: list[dict[str, str]]
    uploads: list[tuple[str, bytes]]
    logos: list[tuple[str, bytes]]
    seed: int


@dataclass
class ClientResult:
    records: list[Record] = field(default_factory=list)
    uploads: list[dict[str, Any]] = field(default_factory=list)
    loop_lag_s: list[float] = field(default_factory=list)
    users_started: int = 0
    users_finished: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    peak_rss_mib: float = 0.0


def client_main(config: ClientConfig, queue: Any) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    started_cpu, started = time.process_time(), time.perf_counter()
    result = ClientResult()
    asyncio.run(run_users(config, result))
    result.cpu_s = time.process_time() - started_cpu
    result.wall_s = time.perf_counter() - started
    result.peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(result)


async def run_users(config: ClientConfig, result: ClientResult) -> None:
    ssl_context = ssl.create_default_context()  # one for all clients (never used: plain http)
    await asyncio.sleep(max(0.0, config.start_at - time.time()))
    t0 = config.start_at
    end = t0 + config.ramp_s + config.duration_s
    drain_end = end + config.drain_timeout_s
    designs = list(config.designs)
    upload_counter = iter(range(10**9))
    stop_lag = asyncio.Event()
    last_response: dict[int, float] = {}  # per user's client: when its last answer ended

    async def lag_probe() -> None:
        while not stop_lag.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.1)
            result.loop_lag_s.append(time.perf_counter() - before - 0.1)

    async def call(
        client: httpx.AsyncClient, endpoint: str, method: str, url: str, **kwargs: Any
    ) -> httpx.Response | None:
        begun = time.time()
        started = time.perf_counter()
        outcome: int | str
        response = None
        try:
            response = await client.request(method, url, **kwargs)
            outcome = response.status_code
        except httpx.TimeoutException:
            outcome = "timeout"
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
        last = last_response.get(id(client))
        idle = None if last is None else round(begun - last, 3)
        last_response[id(client)] = time.time()
        result.records.append((endpoint, begun - t0, time.perf_counter() - started, outcome, idle))
        return response

    async def upload(client: httpx.AsyncClient) -> None:
        name, data = config.uploads[next(upload_counter) % len(config.uploads)]
        content_type = "image/png" if name.endswith(".png") else "image/jpeg"
        sent = time.time()
        response = await call(
            client,
            UPLOAD,
            "POST",
            "/v1/designs",
            files={"file": (name, data, content_type)},
            data={"type": "auto", "format": "png"},
        )
        if response is None or response.status_code != 202:
            return
        body = response.json()
        record = {"id": body["id"], "name": name, "sent": sent - t0, "accepted": time.time() - t0}
        result.uploads.append(record)
        delay = POLL_FIRST_S
        while time.time() < drain_end:
            await asyncio.sleep(delay)
            delay = min(delay * POLL_GROWTH, POLL_MAX_S)
            polled = await call(client, DESIGN, "GET", f"/v1/designs/{body['id']}")
            if polled is None or polled.status_code != 200:
                continue
            design = polled.json()
            record["status"] = design["status"]
            if design["status"] in ("done", "failed"):
                record["finished"] = time.time() - t0
                if design["status"] == "done":
                    cutout = design["cutout"]["url"]
                    await call(client, ASSET, "GET", cutout)
                    designs.append(
                        {"id": body["id"], "original": design["original"]["url"], "cutout": cutout}
                    )
                return

    async def user(index: int) -> None:
        rng = random.Random(config.seed * 100_003 + index)  # noqa: S311 - a load model
        await asyncio.sleep(config.ramp_s * (index / config.total_users))
        result.users_started += 1
        async with httpx.AsyncClient(
            base_url=config.base,
            headers={"X-Api-Key": KEY},
            timeout=config.timeout_s,
            limits=httpx.Limits(max_connections=2, max_keepalive_connections=2),
            verify=ssl_context,
            trust_env=False,
        ) as client:
            endpoints, weights = zip(*BROWSE_WEIGHTS.items(), strict=True)
            while time.time() < end:
                draw = rng.random()
                if draw < config.upload_share:
                    await upload(client)
                elif draw < config.upload_share + config.removebg_share:
                    name, data = rng.choice(config.logos)
                    await call(
                        client,
                        REMOVEBG,
                        "POST",
                        "/v1.0/removebg",
                        files={"image_file": (name, data, "image/png")},
                        data={"size": "preview", "format": "png"},
                    )
                else:
                    endpoint = rng.choices(endpoints, weights)[0]
                    design = rng.choice(designs)
                    url = {
                        ASSET: design["cutout"],
                        ORIGINAL: design["original"],
                        DESIGN: f"/v1/designs/{design['id']}",
                        LIST: "/v1/designs?limit=20",
                        HEALTH: "/health",
                        DETAILED: "/health/detailed",
                    }[endpoint]
                    await call(client, endpoint, "GET", url)
                await asyncio.sleep(rng.uniform(*config.think_s))
        result.users_finished += 1

    lag = asyncio.create_task(lag_probe())
    await asyncio.gather(
        *(user(i) for i in range(config.first_user, config.first_user + config.users))
    )
    stop_lag.set()
    await lag


# --- seeding, statistics, report ---------------------------------------------------------------


def seed_designs(base: str, uploads: list[tuple[str, bytes]]) -> list[dict[str, str]]:
    """Upload a few designs and wait until done, so there is something to browse."""
    headers = {"X-Api-Key": KEY}
    with httpx.Client(base_url=base, headers=headers, timeout=60, trust_env=False) as client:
        ids = []
        for name, data in uploads:
            content_type = "image/png" if name.endswith(".png") else "image/jpeg"
            response = client.post("/v1/designs", files={"file": (name, data, content_type)})
            response.raise_for_status()
            ids.append(response.json()["id"])
        designs = []
        deadline = time.monotonic() + 300
        for design_id in ids:
            while True:
                body = client.get(f"/v1/designs/{design_id}").json()
                if body["status"] == "done":
                    designs.append(
                        {
                            "id": design_id,
                            "original": body["original"]["url"],
                            "cutout": body["cutout"]["url"],
                        }
                    )
                    break
                if body["status"] == "failed" or time.monotonic() > deadline:
                    raise SystemExit(f"seed design {design_id} did not finish: {body}")
                time.sleep(0.3)
    return designs


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def is_error(outcome: int | str) -> bool:
    return isinstance(outcome, str) or not 200 <= outcome < 400


def endpoint_stats(records: list[Record]) -> dict[str, Any]:
    by_endpoint: dict[str, list[tuple[float, int | str]]] = defaultdict(list)
    for endpoint, _, latency, outcome, _ in records:
        by_endpoint[endpoint].append((latency, outcome))
    stats = {}
    for endpoint, items in sorted(by_endpoint.items()):
        latencies = [latency for latency, _ in items]
        errors: dict[str, int] = defaultdict(int)
        for _, outcome in items:
            if is_error(outcome):
                errors[str(outcome)] += 1
        stats[endpoint] = {
            "count": len(items),
            "errors": sum(errors.values()),
            "error_kinds": dict(errors),
            "p50_ms": ms(percentile(latencies, 0.50)),
            "p95_ms": ms(percentile(latencies, 0.95)),
            "p99_ms": ms(percentile(latencies, 0.99)),
            "max_ms": ms(max(latencies)),
        }
    return stats


def ms(seconds: float | None) -> float | None:
    if seconds is None:
        return None
    return math.inf if math.isinf(seconds) else round(seconds * 1000, 1)


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return "inf" if math.isinf(value) else f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(headers) + " |")
    print("| " + " | ".join("---" for _ in headers) + " |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def parse_range(text: str) -> tuple[float, float]:
    low, high = (float(part) for part in text.split(","))
    return low, high


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--duration-s", type=float, default=120, help="steady state, all users")
    parser.add_argument("--ramp-s", type=float, default=30, help="users join evenly over this")
    parser.add_argument("--think-s", type=parse_range, default=(5.0, 15.0), help="min,max")
    parser.add_argument("--upload-share", type=float, default=0.004)
    parser.add_argument("--removebg-share", type=float, default=0.001)
    parser.add_argument("--photo-share", type=float, default=0.25, help="of uploads")
    parser.add_argument("--seed-designs", type=int, default=24)
    parser.add_argument("--drain-timeout-s", type=float, default=300)
    parser.add_argument("--timeout-s", type=float, default=30, help="client request timeout")
    parser.add_argument("--client-procs", type=int, default=1, help="client processes")
    parser.add_argument("--postgres", help="scaled-out shape: PostgreSQL URL (with --redis)")
    parser.add_argument("--redis", help="scaled-out shape: Redis URL (its db is flushed)")
    parser.add_argument("--http-workers", type=int, default=2, help="scaled-out shape")
    parser.add_argument("--workers", type=int, default=2, help="scaled-out shape")
    parser.add_argument("--worker-concurrency", type=int, default=2, help="scaled-out shape")
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--seed", type=int, default=20261128)
    parser.add_argument("--json", type=Path, help="write every figure (and request) here")
    parser.add_argument(
        "--rolling-deploy",
        action="store_true",
        help="scaled shape: 2 API instances behind HAProxy, all processes replaced under load",
    )
    parser.add_argument("--cdn", action="store_true", help="Varnish in front (hit ratio)")
    parser.add_argument(
        "--deploy-after-s", type=float, default=15, help="into the steady state, --rolling-deploy"
    )
    parser.add_argument(
        "--drain-s", type=float, help="STOLENTEE_SHUTDOWN_DRAIN_S (0: the control, no drain)"
    )
    args = parser.parse_args()
    if bool(args.postgres) != bool(args.redis):
        parser.error("--postgres and --redis go together (the scaled-out shape)")
    if args.rolling_deploy and not args.postgres:
        parser.error("--rolling-deploy needs the scaled-out shape (--postgres and --redis)")
    shape = "scaled" if args.postgres else "embedded"

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    expected_uploads = (
        args.users
        * (args.ramp_s / 2 + args.duration_s)
        / statistics.mean(args.think_s)
        * args.upload_share
    )
    uploads = make_uploads(max(50, round(expected_uploads * 3)), args.photo_share, args.seed)
    seed_uploads = make_uploads(args.seed_designs, 0.0, args.seed + 1)
    logos = make_uploads(20, 0.0, args.seed + 2)

    with tempfile.TemporaryDirectory(prefix="stolentee-load1000-") as tmp_name:
        tmp = Path(tmp_name)
        with backend(args, tmp / "data") as env:
            procs = start_service(args, env, tmp)
            api = procs[0]
            base = f"http://127.0.0.1:{api.port}"
            front = None
            try:
                if args.rolling_deploy or args.cdn:
                    from benchmarks.rolling_deploy import Front

                    front = Front(procs, tmp, rolling=args.rolling_deploy, cdn=args.cdn).start()
                    base = front.url
                report = run(args, shape, procs, base, uploads, seed_uploads, logos, front)
            finally:
                if front is not None:
                    front.stop()
                for proc in procs:
                    proc.stop()
            failed_logs = [p for p in procs if p.process and p.process.returncode not in (0, -15)]
            for proc in failed_logs:
                print(f"\n{proc.args} exited {proc.process.returncode if proc.process else '?'}:")
                print(proc.log_tail())
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
        print(f"\nwrote {args.json}")
    return 0 if all(v["pass"] for v in report["verdicts"].values()) else 1


def run(
    args: argparse.Namespace,
    shape: str,
    procs: list[Proc],
    base: str,
    uploads: list[tuple[str, bytes]],
    seed_uploads: list[tuple[str, bytes]],
    logos: list[tuple[str, bytes]],
    front: Any = None,
) -> dict[str, Any]:
    started_at = datetime.now(UTC)
    print(f"{shape} shape: {' + '.join(' '.join(p.args) for p in procs)} on {base}")
    seeded_at = time.perf_counter()
    designs = seed_designs(base, seed_uploads)
    print(f"seeded {len(designs)} designs in {time.perf_counter() - seeded_at:.1f} s")

    http_workers = args.http_workers if args.postgres else 1
    before = scrape_processes(procs, http_workers)
    sampler = Sampler(procs)
    monitor = Monitor(base)

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    start_at = time.time() + 3.0 + 1.0 * args.client_procs  # the clients' imports first
    per_proc = [args.users // args.client_procs] * args.client_procs
    for index in range(args.users % args.client_procs):
        per_proc[index] += 1
    clients = []
    first = 0
    for index, count in enumerate(per_proc):
        config = ClientConfig(
            base=base,
            first_user=first,
            users=count,
            total_users=args.users,
            start_at=start_at,
            ramp_s=args.ramp_s,
            duration_s=args.duration_s,
            drain_timeout_s=args.drain_timeout_s,
            think_s=args.think_s,
            upload_share=args.upload_share,
            removebg_share=args.removebg_share,
            timeout_s=args.timeout_s,
            designs=designs,
            uploads=uploads[index :: args.client_procs],
            logos=logos,
            seed=args.seed,
        )
        first += count
        client = context.Process(target=client_main, args=(config, queue), daemon=True)
        client.start()
        clients.append(client)
    sampler.clients = [c.pid for c in clients if c.pid is not None]
    sampler.start()
    monitor.start()
    steady_start = start_at + args.ramp_s
    steady_end = steady_start + args.duration_s
    deployer = None
    if front is not None and front.rolling:
        deployer = threading.Thread(
            target=front.deploy, args=(steady_start + args.deploy_after_s,), daemon=True
        )
        deployer.start()
    print(
        f"{args.users} users in {args.client_procs} client process(es): ramp {args.ramp_s:.0f} s, "
        f"steady {args.duration_s:.0f} s, think {args.think_s[0]:g}-{args.think_s[1]:g} s ..."
    )
    results: list[ClientResult] = []
    for _ in clients:
        results.append(
            queue.get(timeout=args.ramp_s + args.duration_s + args.drain_timeout_s + 120)
        )
    for client in clients:
        client.join(timeout=30)
    if deployer is not None:
        deployer.join(timeout=600)
        # A replaced process counts from zero: only the new processes' own counters are used.
        before = {key: value for key, value in before.items() if not key.startswith("worker:")}
    finished_at = time.time()
    monitor.stop.set()
    monitor.join()

    # Every design uploaded during the run: its final status, from the server.
    uploaded = [u for r in results for u in r.uploads]
    final: dict[str, int] = defaultdict(int)
    with httpx.Client(
        base_url=base, headers={"X-Api-Key": KEY}, timeout=30, trust_env=False
    ) as check:
        for record in uploaded:
            record["final_status"] = check.get(f"/v1/designs/{record['id']}").json()["status"]
            final[record["final_status"]] += 1
    after = scrape_processes(procs, http_workers)
    sampler.stop.set()
    sampler.join()

    records = [r for result in results for r in result.records]
    t_steady = (args.ramp_s, args.ramp_s + args.duration_s)
    steady = [r for r in records if t_steady[0] <= r[1] < t_steady[1]]
    steady_stats = endpoint_stats(steady)
    all_stats = endpoint_stats(records)

    # Server side: HTTP p95 per route, database query and job duration p95 over the load.
    server_routes = {}
    for method, route in sorted(route_labels(after)):
        buckets = histogram(
            after,
            before,
            "stolentee_http_request_duration_seconds",
            {"method": method, "route": route},
        )
        server_routes[f"{method} {route}"] = {
            "count": histogram_count(buckets),
            "p95_ms": ms(bucket_quantile(buckets, 0.95)),
            "p99_ms": ms(bucket_quantile(buckets, 0.99)),
        }
    query = histogram(after, before, "stolentee_db_query_duration_seconds")
    query_by_role = {
        role: histogram(
            {k: v for k, v in after.items() if k.startswith(role)},
            before,
            "stolentee_db_query_duration_seconds",
        )
        for role in ("api", "worker")
    }
    jobs = histogram(after, before, "stolentee_job_duration_seconds", {"kind": "design"})
    job_errors = sum(
        value - before.get(key, {}).get((sample, labels), 0.0)
        for key, samples in after.items()
        for (sample, labels), value in samples.items()
        if sample == "stolentee_job_duration_seconds_count" and dict(labels).get("outcome") != "ok"
    )
    turnaround = [u["finished"] - u["accepted"] for u in uploaded if "finished" in u]

    resources = sampler.window(steady_start, steady_end)
    lag = [x for r in results for x in r.loop_lag_s]
    livez = [x for t, x in monitor.livez if steady_start <= t <= steady_end]
    detailed = [d for d in monitor.detailed if steady_start <= d["t"] <= steady_end]
    pool_waiting_max = max((d["pool"].get("waiting", 0) for d in detailed), default=None)
    pool_in_use_max = max((d["pool"].get("inUse", 0) for d in detailed), default=None)
    exhaustions = [d["pool"].get("exhaustions", 0) for d in monitor.detailed]
    queue_depth_max = max((d["queue"].get("depth", 0) or 0 for d in monitor.detailed), default=None)
    users_started = sum(r.users_started for r in results)
    users_finished = sum(r.users_finished for r in results)
    steady_seconds = args.duration_s
    throughput = len(steady) / steady_seconds

    # --- verdicts ---
    total_errors = sum(s["errors"] for s in all_stats.values())
    non_upload = {k: v for k, v in steady_stats.items() if k not in UPLOAD_ENDPOINTS}
    worst = max(non_upload.items(), key=lambda kv: kv[1]["p95_ms"] or 0.0, default=None)
    server_non_upload = {
        k: v for k, v in server_routes.items() if k in BROWSE_WEIGHTS and v["p95_ms"] is not None
    }
    worst_server = max(
        server_non_upload.items(), key=lambda kv: kv[1]["p95_ms"] or 0.0, default=None
    )
    query_p95 = bucket_quantile(query, 0.95)
    job_p95 = bucket_quantile(jobs, 0.95)
    turnaround_p95 = percentile(turnaround, 0.95)
    all_done = bool(uploaded) and final.get("done", 0) == len(uploaded)
    verdicts = {
        "users_zero_errors": {
            "goal": f"{args.users} concurrent users with zero errors",
            "measured": f"{users_started} users started, {users_finished} ran to the end; "
            f"{total_errors} errors in {len(records)} requests",
            "pass": users_started == args.users
            and users_finished == args.users
            and total_errors == 0,
        },
        "p95_non_upload": {
            "goal": "p95 < 500 ms on every non-upload endpoint",
            "measured": (
                f"worst client p95 {fmt_ms(worst[1]['p95_ms'])} ms ({worst[0]})" if worst else "-"
            )
            + (
                f"; worst server p95 {fmt_ms(worst_server[1]['p95_ms'])} ms ({worst_server[0]})"
                if worst_server
                else ""
            ),
            "pass": bool(non_upload)
            and all((v["p95_ms"] or 0) < P95_LIMIT_S * 1000 for v in non_upload.values()),
        },
        "db_query_p95": {
            "goal": "database query p95 < 100 ms",
            "measured": f"p95 {fmt_ms(ms(query_p95))} ms over {histogram_count(query)} queries "
            f"(api {fmt_ms(ms(bucket_quantile(query_by_role['api'], 0.95)))} ms"
            + (
                f", workers {fmt_ms(ms(bucket_quantile(query_by_role['worker'], 0.95)))} ms)"
                if args.postgres
                else ", in-process worker included)"
            ),
            "pass": query_p95 is not None and query_p95 < DB_P95_LIMIT_S,
        },
        "jobs": {
            "goal": "every job done, p95 job time < 5 min",
            "measured": f"{final.get('done', 0)}/{len(uploaded)} done"
            + "".join(f", {n} {s}" for s, n in sorted(final.items()) if s != "done")
            + f"; worker p95 {fmt_ms(ms(job_p95))} ms over {histogram_count(jobs)} jobs"
            f" ({job_errors:.0f} errored); upload-to-done p95 {fmt_ms(ms(turnaround_p95))} ms",
            "pass": all_done
            and job_p95 is not None
            and job_p95 < JOB_P95_LIMIT_S
            and turnaround_p95 is not None
            and turnaround_p95 < JOB_P95_LIMIT_S,
        },
    }
    if front is not None:
        verdicts |= front.verdicts()

    # --- print ---
    print(
        f"\nsteady state {steady_seconds:.0f} s: {len(steady)} requests, "
        f"{throughput:.1f} req/s; whole run {len(records)} requests "
        f"(ramp, steady, drain)"
    )
    rows = []
    for endpoint, stat in steady_stats.items():
        server = server_routes.get(endpoint, {})
        rows.append(
            [
                f"`{endpoint}`",
                "upload" if endpoint in UPLOAD_ENDPOINTS else "browse",
                str(stat["count"]),
                str(all_stats[endpoint]["errors"]),
                fmt_ms(stat["p50_ms"]),
                fmt_ms(stat["p95_ms"]),
                fmt_ms(stat["p99_ms"]),
                fmt_ms(stat["max_ms"]),
                fmt_ms(server.get("p95_ms")),
            ]
        )
    print_table(
        [
            "endpoint",
            "kind",
            "requests (steady)",
            "errors (whole run)",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms",
            "server p95 ms",
        ],
        rows,
    )
    print()
    print_table(
        ["goal", "measured", "verdict"],
        [[v["goal"], v["measured"], "PASS" if v["pass"] else "FAIL"] for v in verdicts.values()],
    )
    print("\nresources in steady state (cores: CPU seconds per second; 5 s peak):")
    for role, figures in resources.items():
        print(f"  {role}: {figures}")
    print(
        f"client event-loop lag: p50 {fmt_ms(ms(percentile(lag, 0.5)))} ms, "
        f"p95 {fmt_ms(ms(percentile(lag, 0.95)))} ms, max {fmt_ms(ms(max(lag, default=0.0)))} ms; "
        f"client CPU {sum(r.cpu_s for r in results):.1f} s over "
        f"{max((r.wall_s for r in results), default=0):.0f} s, "
        f"peak RSS {max((r.peak_rss_mib for r in results), default=0):.0f} MiB per process"
    )
    print(
        f"/livez from a monitor (server loop lag + scheduling): "
        f"p50 {fmt_ms(ms(percentile(livez, 0.5)))} ms, p95 {fmt_ms(ms(percentile(livez, 0.95)))} "
        f"ms, max {fmt_ms(ms(max(livez, default=0.0)))} ms"
    )
    print(
        f"pool (health/detailed, every 5 s): in use max {pool_in_use_max}, waiting max "
        f"{pool_waiting_max}, exhaustions {exhaustions[0] if exhaustions else '-'} -> "
        f"{exhaustions[-1] if exhaustions else '-'}; queue depth max {queue_depth_max}"
    )
    print(f"uploads: {len(uploaded)} ({dict(final)}), upload-to-done p50 "
          f"{fmt_ms(ms(percentile(turnaround, 0.5)))} ms, p95 {fmt_ms(ms(turnaround_p95))} ms, "
          f"max {fmt_ms(ms(max(turnaround, default=0.0)))} ms")  # fmt: skip
    errors = [r for r in records if is_error(r[3])]
    for endpoint, begun, latency, outcome, idle in errors[:10]:
        print(
            f"error: {endpoint} at {begun:.1f} s: {outcome} after {latency * 1000:.0f} ms; "
            f"the user's connection had been idle {'-' if idle is None else f'{idle:.3f}'} s "
            f"(server keep-alive: uvicorn's default 5 s)"
        )

    return {
        "started_at": started_at.isoformat(),
        "finished_at": datetime.fromtimestamp(finished_at, UTC).isoformat(),
        "shape": shape,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "processes": [{"role": p.role, "args": p.args} for p in procs],
        "machine": {
            "cpu_count": psutil.cpu_count(),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": sys.version.split()[0],
        },
        "steady_state": {"requests": len(steady), "requests_per_s": round(throughput, 2)},
        "endpoints_steady": steady_stats,
        "endpoints_whole_run": all_stats,
        "server_routes": server_routes,
        "db_query": {
            "p95_ms": ms(query_p95),
            "p99_ms": ms(bucket_quantile(query, 0.99)),
            "count": histogram_count(query),
            "buckets": {str(k): v for k, v in query.items()},
            "by_role_p95_ms": {
                role: ms(bucket_quantile(b, 0.95)) for role, b in query_by_role.items()
            },
        },
        "jobs": {
            "worker_p95_ms": ms(job_p95),
            "count": histogram_count(jobs),
            "errored": job_errors,
            "buckets": {str(k): v for k, v in jobs.items()},
            "upload_to_done_p50_ms": ms(percentile(turnaround, 0.5)),
            "upload_to_done_p95_ms": ms(turnaround_p95),
            "final_status": dict(final),
            "uploads": uploaded,
        },
        "resources_steady": resources,
        "client": {
            "processes": args.client_procs,
            "users_started": users_started,
            "users_finished": users_finished,
            "loop_lag_p50_ms": ms(percentile(lag, 0.5)),
            "loop_lag_p95_ms": ms(percentile(lag, 0.95)),
            "loop_lag_max_ms": ms(max(lag, default=0.0)),
            "cpu_s": [r.cpu_s for r in results],
            "wall_s": [r.wall_s for r in results],
            "peak_rss_mib": [r.peak_rss_mib for r in results],
        },
        "monitor": {
            "livez_p50_ms": ms(percentile(livez, 0.5)),
            "livez_p95_ms": ms(percentile(livez, 0.95)),
            "livez_max_ms": ms(max(livez, default=0.0)),
            "health_detailed": monitor.detailed,
        },
        "resource_samples": sampler.samples,
        "verdicts": verdicts,
        "requests": records,
    }


if __name__ == "__main__":
    raise SystemExit(main())
