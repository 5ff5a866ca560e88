"""Load test of the Remove.bg-compatible API: many concurrent clients, 1-4 MP images.

Starts a real `stolentee serve` (embedded default: SQLite, local files) on a free port, then
sends ``--requests`` removals from ``--concurrency`` concurrent clients while a probe calls
``/health`` four times a second and a sampler records the server's RSS. It prints the status
counts, latencies, the slowest ``/health`` answer and peak memory, and exits 1 when a request
got a 5xx or ``/health`` took longer than ``--health-limit-s``.

    .venv/bin/python benchmarks/load_removebg.py --concurrency 50 --requests 150
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil
from PIL import Image, ImageDraw

KEY = "st_load_benchmark_key"
SKIMAGE_DATA = Path(__import__("skimage").__file__).parent / "data"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def make_images(sizes_mp: list[float]) -> list[tuple[str, bytes]]:
    """Photos (JPEG) and a logo (PNG) at each size, from scikit-image's sample photos."""
    images: list[tuple[str, bytes]] = []
    photos = ["astronaut.png", "chelsea.png", "coffee.png"]
    for index, megapixels in enumerate(sizes_mp):
        source = Image.open(SKIMAGE_DATA / photos[index % len(photos)]).convert("RGB")
        scale = (megapixels * 1e6 / (source.width * source.height)) ** 0.5
        photo = source.resize((round(source.width * scale), round(source.height * scale)))
        buffer = io.BytesIO()
        photo.save(buffer, format="JPEG", quality=90)
        images.append((f"photo-{megapixels:g}mp.jpg", buffer.getvalue()))
        side = round((megapixels * 1e6) ** 0.5)
        logo = Image.new("RGB", (side, side), (255, 255, 255))
        draw = ImageDraw.Draw(logo)
        draw.ellipse([side // 8, side // 8, side * 5 // 8, side * 5 // 8], fill=(200, 30, 30))
        draw.rectangle([side // 2, side // 2, side * 7 // 8, side * 7 // 8], fill=(20, 40, 160))
        buffer = io.BytesIO()
        logo.save(buffer, format="PNG")
        images.append((f"logo-{megapixels:g}mp.png", buffer.getvalue()))
    return images


def start_server(
    port: int, data_dir: Path, command: str = "serve", **settings: str
) -> subprocess.Popen[bytes]:
    """``stolentee COMMAND`` on ``port`` (embedded default in ``data_dir``), with the
    benchmark's key, no rate limit, and ``settings`` as extra environment."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("STOLENTEE_", "DATABASE_"))},
        "STOLENTEE_DATA_DIR": str(data_dir),
        "PORT": str(port),
        "STOLENTEE_API_KEYS": KEY,
        "STOLENTEE_LOG_LEVEL": "warning",
        "STOLENTEE_RATE_LIMIT_MP_PER_MIN": "100000",
        **settings,
    }
    return subprocess.Popen(  # noqa: S603 - our own interpreter and command
        [sys.executable, "-m", "stolentee", command],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_ready(base: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not become ready")


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = 0
        self.samples: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                rss = self.process.memory_info().rss
            except psutil.Error:
                return
            self.samples.append(rss)
            self.peak = max(self.peak, rss)
            self.stop.wait(0.2)


async def run_load(
    base: str, images: list[tuple[str, bytes]], requests: int, concurrency: int, retry: bool
) -> tuple[Counter[int], list[float], list[float], float, int]:
    """Statuses of every answer, latencies of the 200s (retries included), /health latencies,
    wall time, and how many images were finally served."""
    statuses: Counter[int] = Counter()
    served = 0
    latencies: list[float] = []
    health: list[float] = []
    counter = iter(range(requests))
    done = asyncio.Event()
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=180, limits=limits) as client:

        async def worker() -> None:
            nonlocal served
            for index in counter:
                name, data = images[index % len(images)]
                started = time.perf_counter()
                while True:
                    response = await client.post(
                        "/v1.0/removebg",
                        files={"image_file": (name, data)},
                        data={"size": "full", "format": "png"},
                        headers={"X-Api-Key": KEY},
                    )
                    statuses[response.status_code] += 1
                    if response.status_code != 429 or not retry:
                        break
                    await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                if response.status_code == 200:
                    served += 1
                    latencies.append(time.perf_counter() - started)

        async def probe() -> None:
            async with httpx.AsyncClient(base_url=base, timeout=30) as prober:
                while not done.is_set():
                    started = time.perf_counter()
                    await prober.get("/health")
                    health.append(time.perf_counter() - started)
                    await asyncio.sleep(0.25)

        probing = asyncio.create_task(probe())
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        done.set()
        await probing
    return statuses, latencies, health, elapsed, served


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--requests", type=int, default=150)
    parser.add_argument("--sizes", default="1,2,4", help="image sizes in megapixels")
    parser.add_argument("--health-limit-s", type=float, default=1.0)
    parser.add_argument(
        "--no-retry",
        action="store_true",
        help="count 429s and move on instead of retrying after Retry-After like a real client",
    )
    args = parser.parse_args()

    images = make_images([float(size) for size in args.sizes.split(",")])
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="stolentee-load-") as tmp:
        server = start_server(port, Path(tmp))
        try:
            wait_ready(base)
            sampler = RssSampler(server.pid)
            idle_rss = psutil.Process(server.pid).memory_info().rss
            sampler.start()
            statuses, latencies, health, elapsed, served = asyncio.run(
                run_load(base, images, args.requests, args.concurrency, not args.no_retry)
            )
            sampler.stop.set()
            sampler.join()
            end_rss = psutil.Process(server.pid).memory_info().rss
        finally:
            server.terminate()
            server.wait(timeout=30)

    ok = served
    server_errors = sum(count for status, count in statuses.items() if status >= 500)
    print(f"requests: {args.requests} from {args.concurrency} concurrent clients, "
          f"images {args.sizes} MP (photos and logos), size=full, PNG out")  # fmt: skip
    print("answers: " + ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items())))
    print(f"images served: {served} of {args.requests}" + ("" if args.no_retry else
          " (clients retry 429s after Retry-After)"))  # fmt: skip
    print(f"wall time: {elapsed:.1f} s, served {ok / elapsed:.2f} images/s")
    if latencies:
        ordered = sorted(latencies)
        p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        print(
            f"time to a served image (waits and retries included): "
            f"p50 {statistics.median(ordered):.2f} s, p95 {p95:.2f} s"
        )
    if health:
        print(
            f"/health during load: {len(health)} probes, max {max(health) * 1000:.0f} ms, "
            f"median {statistics.median(health) * 1000:.0f} ms"
        )
    print(
        f"server RSS: idle {idle_rss / 2**20:.0f} MB, peak {sampler.peak / 2**20:.0f} MB, "
        f"after {end_rss / 2**20:.0f} MB"
    )
    failed = server_errors > 0 or (health and max(health) > args.health_limit_s)
    print("RESULT: " + ("FAIL" if failed else "PASS") + f" (5xx: {server_errors})")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
