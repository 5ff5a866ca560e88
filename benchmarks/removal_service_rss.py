"""Memory of `stolentee removal-service` serving 4 MP photos with the quality model.

Starts a real `stolentee removal-service` (embedded default) with ``STOLENTEE_MODEL`` set to
``--model`` (default: the quality tier), sends ``--images`` removals of 4 MP photos (the
development set's photos, upscaled, JPEG) from ``--concurrency`` clients, and samples the
server's RSS five times a second. It prints the peak, the RSS after the first ``--warm``
images and at the end (growth), and the latencies. Exits 1 when a request failed or the peak
passes ``--limit-mb``.

    make bench-data && stolentee models install isnet
    .venv/bin/python benchmarks/removal_service_rss.py --images 200
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
from load_removebg import KEY, RssSampler, free_port, start_server, wait_ready
from PIL import Image

DATA = Path(__file__).parent / "data" / "photo"


def photos(megapixels: float, count: int) -> list[bytes]:
    sources = sorted(p for p in DATA.glob("*.jpg"))[:count]
    if not sources:
        raise SystemExit(f"no photos in {DATA}; run `make bench-data`")
    encoded = []
    for path in sources:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        scale = (megapixels * 1e6 / (image.width * image.height)) ** 0.5
        image = image.resize((round(image.width * scale), round(image.height * scale)))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        encoded.append(buffer.getvalue())
    return encoded


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="quality")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--warm", type=int, default=20, help="images before the growth baseline")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--megapixels", type=float, default=4.0)
    parser.add_argument("--limit-mb", type=float, default=1536)
    parser.add_argument("--max-in-flight", default="2", help="STOLENTEE_ENGINE_MAX_IN_FLIGHT")
    parser.add_argument("--every", type=int, default=50, help="print the RSS every this many")
    parser.add_argument("--runtime", default="auto", help="STOLENTEE_ENGINE_RUNTIME")
    parser.add_argument("--precision", default="auto", help="STOLENTEE_ENGINE_PRECISION")
    args = parser.parse_args()

    images = photos(args.megapixels, 12)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    latencies: list[float] = []
    failures: list[str] = []
    model_header: set[str] = set()
    warm_rss = 0
    checkpoints: list[tuple[int, int]] = []  # (images served, RSS)
    lock = threading.Lock()
    with tempfile.TemporaryDirectory(prefix="stolentee-rss-") as tmp:
        server = start_server(
            port,
            Path(tmp),
            "removal-service",
            STOLENTEE_MODEL=args.model,
            STOLENTEE_ENGINE_MAX_IN_FLIGHT=args.max_in_flight,
            STOLENTEE_ENGINE_RUNTIME=args.runtime,
            STOLENTEE_ENGINE_PRECISION=args.precision,
        )
        try:
            wait_ready(base, timeout_s=120)
            process = psutil.Process(server.pid)
            idle_rss = process.memory_info().rss
            sampler = RssSampler(server.pid)
            sampler.start()

            def one(index: int) -> None:
                nonlocal warm_rss
                started = time.perf_counter()
                response = httpx.post(
                    f"{base}/v1.0/removebg",
                    files={"image_file": (f"{index}.jpg", images[index % len(images)])},
                    data={"size": "full", "format": "png", "type": "person"},
                    headers={"X-Api-Key": KEY},
                    timeout=300,
                )
                with lock:
                    if response.status_code != 200:
                        failures.append(f"{index}: {response.status_code} {response.text[:200]}")
                        return
                    latencies.append(time.perf_counter() - started)
                    model_header.add(response.headers.get("X-Model", "?"))
                    if len(latencies) == args.warm:
                        warm_rss = process.memory_info().rss
                    if len(latencies) % args.every == 0:
                        checkpoints.append((len(latencies), process.memory_info().rss))

            wall = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                list(pool.map(one, range(args.images)))
            wall = time.perf_counter() - wall
            end_rss = process.memory_info().rss
            sampler.stop.set()
            sampler.join()
        finally:
            server.terminate()
            server.wait(timeout=30)

    mib = 1 << 20
    peak = sampler.peak / mib
    print(
        f"removal-service, model {args.model} (X-Model {', '.join(sorted(model_header))}), "
        f"{args.images} photos of {args.megapixels:g} MP from {args.concurrency} clients, "
        f"{args.max_in_flight} in flight, {args.runtime} in {args.precision}"
    )
    print(f"  served {len(latencies)}, failed {len(failures)}")
    for line in failures[:5]:
        print(f"    {line}")
    if latencies:
        print(
            f"  latency: median {statistics.median(latencies):.2f} s, "
            f"max {max(latencies):.2f} s; {len(latencies) / wall:.2f} images/s"
        )
    print(f"  RSS: idle {idle_rss / mib:.0f} MiB, peak {peak:.0f} MiB (limit {args.limit_mb:g})")
    print(
        f"  RSS after image {args.warm}: {warm_rss / mib:.0f} MiB, at the end: "
        f"{end_rss / mib:.0f} MiB (growth {(end_rss - warm_rss) / mib:+.0f} MiB)"
    )
    if checkpoints:
        steps = ", ".join(f"{count}: {rss / mib:.0f}" for count, rss in checkpoints)
        print(f"  RSS after so many images (MiB): {steps}")
    return 1 if failures or peak > args.limit_mb else 0


if __name__ == "__main__":
    sys.exit(main())
