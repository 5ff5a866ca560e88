"""Storage migration benchmark: ``stolentee migrate-storage`` against ``rclone copy``.

One SeaweedFS server (``tests.fakes.seaweedfs``, ``weed mini`` on loopback) holds a source bucket of
``--objects`` random objects of ``--size-kib`` each (keys ``uploads/bench/<i>.bin`` plus a few
unicode keys), written with ``S3Storage.put`` so they carry stolentee's sha256 metadata, as
objects written by stolentee do. Each repetition then copies the bucket into fresh buckets with:

- ``stolentee``: ``stolentee migrate-storage --from s3:SRC --to s3:DST --concurrency C
  --manifest FILE --yes`` with the ``S3_*`` profile pointing at the server. It reads every
  object, checks it against the source's sha256, writes it and reads it back to compare sha256.
  Until the CLI has the command, ``--stolentee api`` (chosen by ``auto``) runs the same
  migration through ``stolentee.storage.migration.copier.migrate`` in a child interpreter.
- ``rclone``: Debian's rclone, configured only by ``RCLONE_CONFIG_SW_*`` variables, running
  ``rclone copy --checksum --transfers C --checkers C sw:SRC sw:DST``. Both buckets are on one
  remote, so rclone copies **server-side** (``CopyObject``): no object byte reaches rclone.
  ``--checksum`` compares sizes and MD5s (ETags) from the listings; nothing is read back.
- ``rclone-stream``: the same plus ``--disable Copy --metadata``: every byte goes through rclone
  (GET, then PUT), as between two providers (Supabase to R2), with the user metadata (our sha256)
  and ``Cache-Control`` kept. This is the like-for-like comparison with stolentee.

The order of the tools rotates from one repetition to the next to spread machine noise. After
each copy the destination is checked outside the timing: exactly the source's keys, every
object's bytes hash to the source's sha256; the share with our sha256 metadata and with the
source's content type and ``Cache-Control`` is reported. The re-run (resume) case runs each tool
again on its complete destination: stolentee reads every object back by default
(``rerun``), ``--no-verify-existing`` only compares heads (``rerun-no-verify``); rclone's re-run
compares the two listings.

Client CPU is the tool process's user+system time (``RUSAGE_CHILDREN``), server CPU the
``weed`` process's; both machine-wide on the same cores. ``--requests`` repeats each case once
through a counting loopback proxy (S3 requests per object by operation, bytes each way; untimed)
and ``--profile`` runs the Python API path in-process under cProfile with per-thread CPU time.

    .venv/bin/python benchmarks/migrate_vs_rclone.py                       # 1000 x 100 KiB, x3
    .venv/bin/python benchmarks/migrate_vs_rclone.py --objects 200 --repeat 1 --requests --profile
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import hashlib
import io
import json
import os
import platform
import pstats
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psutil

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.fakes.seaweedfs import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, SeaweedFS  # noqa: E402

from stolentee.storage.s3.objects import SHA256_METADATA  # noqa: E402
from stolentee.storage.s3.store import S3Storage  # noqa: E402

MIB = 1024 * 1024
UNICODE_KEYS = (
    "uploads/bench/ünïcødé/été 2024 — résumé.bin",
    "uploads/bench/日本語/テスト ファイル.bin",
    "uploads/bench/emoji/👕 + 🎽.bin",
)
STOLENTEE = "stolentee"
RCLONE = "rclone"
RCLONE_STREAM = "rclone-stream"
COPY_TOOLS = (STOLENTEE, RCLONE, RCLONE_STREAM)
WHAT_IS_VERIFIED = {
    STOLENTEE: "reads each source object and checks its sha256, writes it, reads it back and "
    "compares sha256 and size; a re-run reads every existing object back unless "
    "--no-verify-existing (then it compares the heads' sha256 and size)",
    RCLONE: "server-side CopyObject, then a HEAD of the copy: its MD5 (ETag) against the "
    "source's; --checksum decides what to copy on size + MD5 from the listings; no byte is read",
    RCLONE_STREAM: "GET + PUT through rclone (--disable Copy --metadata), the PUT carrying "
    "Content-MD5 (the source's ETag), then a HEAD: MD5 against the source's; no read-back",
}
BUCKET_SUBRESOURCES = {"location", "versioning", "acl", "policy", "uploads", "tagging", "cors"}
PROXY_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


# --- the source bucket -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SourceObject:
    key: str
    size: int
    sha256: str
    content_type: str
    cache_control: str | None


def fill_source(
    server: SeaweedFS, bucket: str, count: int, size: int, concurrency: int, seed: int
) -> dict[str, SourceObject]:
    """``count`` + the unicode keys of ``size`` random bytes, uploaded with ``S3Storage.put``."""
    client = server.client()
    client.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    storage = S3Storage(client=client, bucket=bucket)  # type: ignore[arg-type]
    keys = [f"uploads/bench/{i}.bin" for i in range(count)] + list(UNICODE_KEYS)

    def upload(index_key: tuple[int, str]) -> SourceObject:
        index, key = index_key
        data = random.Random(seed * 1_000_003 + index).randbytes(size)  # noqa: S311 - test data
        info = storage.put(key, data)
        if info.sha256 != hashlib.sha256(data).hexdigest():
            raise RuntimeError(f"{key!r}: the stored sha256 is not the data's")
        head = client.head_object(Bucket=bucket, Key=key)  # type: ignore[attr-defined]
        return SourceObject(key, size, info.sha256, head["ContentType"], head.get("CacheControl"))

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        objects = list(pool.map(upload, enumerate(keys)))
    return {obj.key: obj for obj in objects}


# --- checking a destination ------------------------------------------------------------------


@dataclass(slots=True)
class Check:
    """What a destination bucket holds compared with the source (read outside the timing)."""

    objects: int = 0
    missing: int = 0
    extra: int = 0
    wrong_bytes: int = 0
    sha256_metadata: int = 0  # objects carrying our x-amz-meta-stolentee-sha256, and right
    content_type: int = 0  # objects with the source's Content-Type
    cache_control: int = 0  # objects with the source's Cache-Control

    def ok(self, expected: int) -> bool:
        return self.objects == expected and not (self.missing or self.extra or self.wrong_bytes)


def list_keys(client: Any, bucket: str) -> list[str]:
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    return keys


def check_bucket(
    client: Any, bucket: str, expected: dict[str, SourceObject], concurrency: int
) -> Check:
    keys = set(list_keys(client, bucket))
    check = Check(
        objects=len(keys), missing=len(expected.keys() - keys), extra=len(keys - expected.keys())
    )

    def one(key: str) -> tuple[bool, bool, bool, bool]:
        answer = client.get_object(Bucket=bucket, Key=key)
        digest = hashlib.sha256(answer["Body"].read()).hexdigest()
        source = expected[key]
        return (
            digest == source.sha256,
            answer.get("Metadata", {}).get(SHA256_METADATA) == source.sha256,
            answer.get("ContentType") == source.content_type,
            answer.get("CacheControl") == source.cache_control,
        )

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for right, meta, content_type, cache in pool.map(one, sorted(keys & expected.keys())):
            check.wrong_bytes += not right
            check.sha256_metadata += meta
            check.content_type += content_type
            check.cache_control += cache
    return check


def drop_bucket(client: Any, bucket: str) -> None:
    """Empty and delete ``bucket`` (keeps the server's disk use flat across repetitions)."""
    keys = list_keys(client, bucket)
    for start in range(0, len(keys), 1000):
        batch = [{"Key": key} for key in keys[start : start + 1000]]
        client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
    with contextlib.suppress(Exception):
        client.delete_bucket(Bucket=bucket)


# --- the contenders --------------------------------------------------------------------------


def clean_environment() -> dict[str, str]:
    """This environment without storage profiles, credentials, rclone settings or proxies."""
    dropped = ("AWS_", "S3_", "R2_", "RCLONE_", "STOLENTEE_")
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(dropped) and name not in PROXY_ENV
    }
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def ensure_rclone() -> str:
    """The rclone binary; installs Debian's package when it is missing."""
    found = shutil.which("rclone")
    if found:
        return found
    prefix: list[str] = []
    if os.geteuid() != 0:
        sudo = shutil.which("sudo")
        if sudo is None:
            raise SystemExit(
                "rclone is not installed and this user cannot install it (not root, no sudo): "
                "run `apt-get install -y rclone` as root, then run this benchmark again"
            )
        prefix = [sudo, "-n"]
    for command in (
        [*prefix, "apt-get", "install", "-y", "--no-install-recommends", "rclone"],
        [*prefix, "apt-get", "update"],
        [*prefix, "apt-get", "install", "-y", "--no-install-recommends", "rclone"],
    ):
        print(f"rclone is not installed; running: {' '.join(command)}", flush=True)
        subprocess.run(command, check=False)  # noqa: S603 - apt-get with fixed arguments
        found = shutil.which("rclone")
        if found:
            return found
    raise SystemExit("could not install rclone with apt-get (see its output above)")


API_SCRIPT = """
import sys
from stolentee.config import Settings
from stolentee.storage.factory import build_named_storage
from stolentee.storage.migration.copier import migrate
from stolentee.storage.migration.manifest import Manifest
source_spec, dest_spec, concurrency, manifest_path, verify_existing = sys.argv[1:6]
settings = Settings()
source = build_named_storage(settings, source_spec)
dest = build_named_storage(settings, dest_spec)
with Manifest.open(manifest_path) as manifest:
    report = migrate(
        source, dest, manifest=manifest, concurrency=int(concurrency),
        verify_existing=verify_existing == "1",
    )
print(f"copied {report.copied}, skipped {report.skipped}, failed {report.failed}, "
      f"missing {report.missing}")
sys.exit(0 if report.ok else 1)
"""


@dataclass(slots=True)
class Contenders:
    """How to run each tool against one server (``endpoint`` may be the counting proxy)."""

    endpoint: str
    source_bucket: str
    concurrency: int
    work_dir: Path
    stolentee_mode: str  # "cli" or "api"
    no_verify_flag: bool  # the CLI has --no-verify-existing
    rclone: str

    def stolentee_env(self) -> dict[str, str]:
        return {
            **clean_environment(),
            "S3_ENDPOINT": self.endpoint,
            "S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "S3_REGION": REGION,
            "STOLENTEE_DATA_DIR": str(self.work_dir / "stolentee-data"),
        }

    def rclone_env(self) -> dict[str, str]:
        config = self.work_dir / "rclone.conf"
        config.touch()  # empty: the remote comes from the variables, never a user's config
        return {
            **clean_environment(),
            "RCLONE_CONFIG": str(config),
            "RCLONE_CONFIG_SW_TYPE": "s3",
            "RCLONE_CONFIG_SW_PROVIDER": "SeaweedFS",
            "RCLONE_CONFIG_SW_ENV_AUTH": "false",
            "RCLONE_CONFIG_SW_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "RCLONE_CONFIG_SW_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "RCLONE_CONFIG_SW_ENDPOINT": self.endpoint,
            "RCLONE_CONFIG_SW_REGION": REGION,
            "RCLONE_CONFIG_SW_FORCE_PATH_STYLE": "true",
        }

    def stolentee_command(self, dest: str, manifest: Path, *, verify_existing: bool) -> list[str]:
        if self.stolentee_mode == "api":
            return [
                sys.executable,
                "-c",
                API_SCRIPT,
                f"s3:{self.source_bucket}",
                f"s3:{dest}",
                str(self.concurrency),
                str(manifest),
                "1" if verify_existing else "0",
            ]
        command = [
            stolentee_binary(),
            "migrate-storage",
            "--from",
            f"s3:{self.source_bucket}",
            "--to",
            f"s3:{dest}",
            "--concurrency",
            str(self.concurrency),
            "--manifest",
            str(manifest),
            "--yes",
        ]
        if not verify_existing:
            command.append("--no-verify-existing")
        return command

    def rclone_command(self, dest: str, *, stream: bool) -> list[str]:
        command = [
            self.rclone,
            "copy",
            "--checksum",
            "--transfers",
            str(self.concurrency),
            "--checkers",
            str(self.concurrency),
            f"sw:{self.source_bucket}",
            f"sw:{dest}",
        ]
        if stream:
            command[2:2] = ["--disable", "Copy", "--metadata"]
        return command

    def command(self, tool: str, case: str, dest: str) -> tuple[list[str], dict[str, str]]:
        if tool == STOLENTEE:
            manifest = self.work_dir / f"manifest-{dest}.jsonl"
            verify = case != "rerun-no-verify"
            return self.stolentee_command(dest, manifest, verify_existing=verify), (
                self.stolentee_env()
            )
        return self.rclone_command(dest, stream=tool == RCLONE_STREAM), self.rclone_env()


def stolentee_binary() -> str:
    return str(Path(sys.executable).with_name("stolentee"))


def detect_cli() -> tuple[bool, bool]:
    """Whether ``stolentee migrate-storage`` exists, and whether it has --no-verify-existing."""
    try:
        answer = subprocess.run(  # noqa: S603 - our own CLI
            [stolentee_binary(), "migrate-storage", "--help"],
            capture_output=True,
            text=True,
            timeout=120,
            env={**clean_environment(), "COLUMNS": "200"},
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False, False
    text = answer.stdout + answer.stderr
    has = answer.returncode == 0 and all(
        flag in text for flag in ("--from", "--to", "--manifest", "--yes")
    )
    return has, has and "--no-verify-existing" in text


# --- one timed run ---------------------------------------------------------------------------


@dataclass(slots=True)
class Run:
    tool: str
    case: str  # copy, rerun, rerun-no-verify
    repetition: int
    dest: str
    wall_s: float
    client_cpu_s: float
    server_cpu_s: float
    returncode: int
    check: Check | None = None
    output_tail: str = ""


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def timed_run(
    contenders: Contenders,
    server: psutil.Process,
    tool: str,
    case: str,
    dest: str,
    repetition: int,
    timeout_s: float,
) -> Run:
    command, env = contenders.command(tool, case, dest)
    cwd = contenders.work_dir / "cwd"  # no stray .env file
    cwd.mkdir(exist_ok=True)
    client_before, server_before = children_cpu_s(), process_cpu_s(server)
    started = time.perf_counter()
    try:
        answer = subprocess.run(  # noqa: S603 - the contenders, fixed arguments
            command,
            env=env,
            cwd=cwd,
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
        returncode, output = answer.returncode, answer.stdout + answer.stderr
    except subprocess.TimeoutExpired as exc:
        returncode, output = -1, (exc.stdout or b"") + (exc.stderr or b"") + b"\n(timed out)"
    wall = time.perf_counter() - started
    return Run(
        tool=tool,
        case=case,
        repetition=repetition,
        dest=dest,
        wall_s=wall,
        client_cpu_s=children_cpu_s() - client_before,
        server_cpu_s=process_cpu_s(server) - server_before,
        returncode=returncode,
        output_tail=output.decode("utf-8", "replace")[-1500:],
    )


# --- counting S3 requests --------------------------------------------------------------------


@dataclass(slots=True)
class Traffic:
    requests: Counter[str] = field(default_factory=Counter)
    bytes_up: int = 0  # request heads and bodies, client to server
    bytes_down: int = 0  # responses, server to client
    connections: int = 0


def classify(method: str, target: str, headers: dict[str, str]) -> str:
    """The S3 operation of one request (path-style addressing)."""
    parts = urlsplit(target)
    query = parse_qs(parts.query, keep_blank_values=True)
    bucket, _, key = parts.path.lstrip("/").partition("/")
    if not bucket:
        return f"{method} service"
    if not key:
        if method == "GET" and not query.keys() & BUCKET_SUBRESOURCES:
            return "ListObjects"  # v2 (list-type=2) or v1 (rclone: delimiter, marker)
        if method == "POST" and "delete" in query:
            return "DeleteObjects"
        return {"HEAD": "HeadBucket", "PUT": "CreateBucket"}.get(method, f"{method} bucket")
    if method == "PUT" and "x-amz-copy-source" in headers:
        return "CopyObject"
    if "uploadId" in query or "uploads" in query:
        return f"{method} multipart"
    return {
        "GET": "GetObject",
        "HEAD": "HeadObject",
        "PUT": "PutObject",
        "DELETE": "DeleteObject",
    }.get(method, f"{method} object")


class CountingProxy:
    """A loopback TCP proxy in a thread of its own that parses the HTTP/1.1 requests passing
    through and counts them by S3 operation. Slows requests down: never used for timings."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.traffic = Traffic()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.port = 0
        self._thread = threading.Thread(target=self._serve, name="counting-proxy", daemon=True)

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the counting proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def take(self) -> Traffic:
        with self._lock:
            traffic, self.traffic = self.traffic, Traffic()
        return traffic

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0, limit=1 << 20)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self.traffic.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        try:
            await asyncio.gather(
                self._requests(reader, up_writer), self._responses(up_reader, writer)
            )
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (writer, up_writer):
                w.close()

    async def _requests(self, reader: asyncio.StreamReader, out: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            out.write(head)
            await out.drain()  # before the body: the client may wait for "100 Continue"
            request_line, *lines = head[:-4].decode("latin-1").split("\r\n")
            method, target, _ = request_line.split(" ", 2)
            headers = {}
            for line in lines:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            sent = len(head)
            if "chunked" in headers.get("transfer-encoding", "").lower():
                while True:
                    size_line = await reader.readuntil(b"\r\n")
                    size = int(size_line.split(b";")[0], 16)
                    chunk = size_line + await reader.readexactly(size + 2)
                    out.write(chunk)
                    sent += len(chunk)
                    if size == 0:
                        break  # (no trailers from our clients)
            else:
                remaining = int(headers.get("content-length", "0") or 0)
                while remaining:
                    chunk = await reader.read(min(remaining, 1 << 16))
                    if not chunk:
                        raise asyncio.IncompleteReadError(b"", remaining)
                    out.write(chunk)
                    remaining -= len(chunk)
                    sent += len(chunk)
                    await out.drain()
            await out.drain()
            with self._lock:
                self.traffic.requests[classify(method, target, headers)] += 1
                self.traffic.bytes_up += sent
        out.write_eof()

    async def _responses(self, reader: asyncio.StreamReader, out: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(1 << 16):
            out.write(chunk)
            await out.drain()
            with self._lock:
                self.traffic.bytes_down += len(chunk)
        with contextlib.suppress(OSError):
            out.write_eof()


# --- profiling the Python API path -----------------------------------------------------------


@contextlib.contextmanager
def profiled_threads() -> Iterator[list[cProfile.Profile]]:
    """cProfile in this thread and every thread started meanwhile, timing thread CPU."""
    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()

    def bootstrap(*_: object) -> None:  # the first profile event of a new thread
        profile = cProfile.Profile(time.thread_time)
        with lock:
            profiles.append(profile)
        profile.enable()

    main = cProfile.Profile(time.thread_time)
    profiles.append(main)
    threading.setprofile(bootstrap)  # type: ignore[arg-type]
    main.enable()
    try:
        yield profiles
    finally:
        main.disable()
        threading.setprofile(None)  # type: ignore[arg-type]


def area_of(filename: str, function: str) -> str:
    if filename == "~":
        if "_hashlib" in function or "sha256" in function or "openssl" in function:
            return "hashlib (C)"
        if "socket" in function or "select" in function or "poll" in function:
            return "socket I/O (C)"
        if "lock" in function or "acquire" in function:
            return "locks"
        return "other built-ins"
    path = filename.replace("\\", "/")
    if "/site-packages/" in path:
        return path.split("/site-packages/", 1)[1].split("/", 1)[0]
    if "/stolentee/" in path:
        return "stolentee"
    return "stdlib " + Path(path).stem


def print_profile(profiles: list[cProfile.Profile], objects: int, title: str) -> dict[str, Any]:
    stats = pstats.Stats(profiles[0], stream=io.StringIO())
    for profile in profiles[1:]:
        with contextlib.suppress(TypeError):  # a thread that never ran Python code
            stats.add(profile)
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for _, _, tt, _, _ in raw.values())
    areas: dict[str, float] = defaultdict(float)
    for (filename, _, function), (_, _, tt, _, _) in raw.items():
        areas[area_of(filename, function)] += tt
    print(
        f"\n{title}: {total:.2f} s thread CPU under cProfile = {1000 * total / objects:.2f} ms per "
        "object (profiler overhead included; compare shares, not absolute times)"
    )
    print(
        "  CPU by package: "
        + ", ".join(
            f"{name} {100 * tt / total:.0f}%"
            for name, tt in sorted(areas.items(), key=lambda a: -a[1])
            if tt / total >= 0.01
        )
    )
    rows = sorted(raw.items(), key=lambda item: -item[1][2])[:15]
    print("  top functions by own CPU:")
    for (filename, line, function), (_, calls, tt, ct, _) in rows:
        where = f"{Path(filename).parent.name}/{Path(filename).name}:{line}" if line else ""
        print(
            f"    {100 * tt / total:5.1f}% own {100 * ct / total:5.1f}% cum "
            f"{calls / objects:7.1f}/obj  {function} {where}"
        )
    ours = [
        (function, calls, ct)
        for (filename, _, function), (_, calls, _, ct, _) in raw.items()
        if "/stolentee/storage/" in filename
        and function
        in {
            "head",
            "put",
            "_digest",
            "list",
            "_dest_has_same_head",
            "_spool_source",
            "_put_verified",
            "_dest_holds",
            "_copy",
            "_open",
        }
    ]
    print("  stolentee storage calls (cumulative CPU per object, calls per object):")
    for function, calls, ct in sorted(ours, key=lambda row: -row[2]):
        print(
            f"    {function:<22} {1000 * ct / objects:7.2f} ms/obj  "
            f"{calls / objects:5.2f} calls/obj"
        )
    return {
        "cpu_ms_per_object": 1000 * total / objects,
        "areas": {name: tt / total for name, tt in areas.items()},
    }


def profile_api(
    server: SeaweedFS, source_bucket: str, objects: int, concurrency: int, work_dir: Path
) -> dict[str, Any]:
    from stolentee.storage.migration.copier import migrate
    from stolentee.storage.migration.manifest import Manifest

    client = server.client()
    results: dict[str, Any] = {}
    dest = "profile-dest"
    client.create_bucket(Bucket=dest)  # type: ignore[attr-defined]
    for case, verify in (("copy", True), ("rerun", True), ("rerun-no-verify", False)):
        # As the CLI builds them: credentials known (signed requests), one account.
        source, target = (
            S3Storage(
                client=server.client(),  # type: ignore[arg-type]
                bucket=bucket,
                account=server.access_key_id,
                credentials=server.credentials(),
            )
            for bucket in (source_bucket, dest)
        )
        with Manifest.open(work_dir / "profile-manifest.jsonl") as manifest:
            started = time.perf_counter()
            with profiled_threads() as profiles:
                report = migrate(
                    source,
                    target,
                    manifest=manifest,
                    concurrency=concurrency,
                    verify_existing=verify,
                )
                source.close()
                target.close()
            wall = time.perf_counter() - started
        if not report.ok:
            print(f"profiled {case}: NOT OK {report}")
        results[case] = print_profile(
            profiles, objects, f"cProfile of migrate() in-process, {case} ({wall:.1f} s wall)"
        )
    drop_bucket(client, dest)
    return results


# --- the benchmark ---------------------------------------------------------------------------


def summarise(runs: list[Run], objects: int, total_bytes: int) -> list[dict[str, Any]]:
    rows = []
    groups: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        groups[(run.tool, run.case)].append(run)
    for (tool, case), group in groups.items():
        walls = [run.wall_s for run in group]
        median = statistics.median(walls)
        rows.append(
            {
                "tool": tool,
                "case": case,
                "runs": len(group),
                "median_s": median,
                "min_s": min(walls),
                "objects_per_s": objects / median,
                "mib_per_s": total_bytes / MIB / median,
                "client_cpu_ms_per_object": 1000
                * statistics.median(run.client_cpu_s for run in group)
                / objects,
                "server_cpu_ms_per_object": 1000
                * statistics.median(run.server_cpu_s for run in group)
                / objects,
                "all_ok": all(
                    run.returncode == 0 and (run.check is None or run.check.ok(objects))
                    for run in group
                ),
            }
        )
    return rows


def print_summary(rows: list[dict[str, Any]]) -> None:
    print(
        "\n| tool | case | runs | median s | min s | objects/s | MiB/s | client CPU ms/obj "
        "| server CPU ms/obj | ok |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['tool']} | {row['case']} | {row['runs']} | {row['median_s']:.2f} | "
            f"{row['min_s']:.2f} | {row['objects_per_s']:.0f} | {row['mib_per_s']:.1f} | "
            f"{row['client_cpu_ms_per_object']:.2f} | {row['server_cpu_ms_per_object']:.2f} | "
            f"{'yes' if row['all_ok'] else 'NO'} |"
        )


def ratios(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """``other_time / stolentee_time`` (median and min) for the copy and re-run cases."""
    by = {(row["tool"], row["case"]): row for row in rows}
    pairs = {
        "rclone (server-side) / stolentee, copy": ((RCLONE, "copy"), (STOLENTEE, "copy")),
        "rclone-stream / stolentee, copy": ((RCLONE_STREAM, "copy"), (STOLENTEE, "copy")),
        "rclone re-run / stolentee re-run (read-back)": ((RCLONE, "rerun"), (STOLENTEE, "rerun")),
        "rclone re-run / stolentee re-run --no-verify-existing": (
            (RCLONE, "rerun"),
            (STOLENTEE, "rerun-no-verify"),
        ),
    }
    result = {}
    for name, (other, ours) in pairs.items():
        if other in by and ours in by:
            result[name] = {
                "median": by[other]["median_s"] / by[ours]["median_s"],
                "min": by[other]["min_s"] / by[ours]["min_s"],
            }
    return result


def startup_s(contenders: Contenders) -> float:
    """Wall time of the stolentee entry point doing nothing (interpreter and imports)."""
    command = (
        [stolentee_binary(), "migrate-storage", "--help"]
        if contenders.stolentee_mode == "cli"
        else [
            sys.executable,
            "-c",
            "import stolentee.storage.migration.copier, stolentee.storage.s3.store",
        ]
    )
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run(  # noqa: S603 - our own entry point
            command, env=contenders.stolentee_env(), capture_output=True, check=False
        )
        best = min(best, time.perf_counter() - started)
    return best


def count_requests(
    contenders: Contenders, proxy: CountingProxy, client: Any, objects: int, timeout_s: float
) -> dict[str, dict[str, Any]]:
    """Each case once through the counting proxy (untimed): requests and bytes per object."""
    server = psutil.Process()  # CPU figures are meaningless here; any process will do
    results: dict[str, dict[str, Any]] = {}
    cases = [
        (STOLENTEE, "copy", "req-stolentee"),
        (STOLENTEE, "rerun", "req-stolentee"),
        (RCLONE, "copy", "req-rclone"),
        (RCLONE, "rerun", "req-rclone"),
        (RCLONE_STREAM, "copy", "req-rclone-stream"),
    ]
    if contenders.no_verify_flag or contenders.stolentee_mode == "api":
        cases.insert(2, (STOLENTEE, "rerun-no-verify", "req-stolentee"))
    for bucket in {dest for _, _, dest in cases}:
        client.create_bucket(Bucket=bucket)
    print(
        "\nS3 requests per object through a counting proxy (one untimed run each; "
        "bytes per object both ways)"
    )
    print("| tool | case | requests/obj | by operation (per object) | KiB up/obj | KiB down/obj |")
    print("| --- | --- | --- | --- | --- | --- |")
    for tool, case, dest in cases:
        proxy.take()
        run = timed_run(contenders, server, tool, case, dest, 0, timeout_s)
        traffic = proxy.take()
        total = sum(traffic.requests.values())
        ops = ", ".join(
            f"{name} {count / objects:.2f}" for name, count in traffic.requests.most_common()
        )
        status = "" if run.returncode == 0 else f" (exit {run.returncode})"
        print(
            f"| {tool} | {case}{status} | {total / objects:.2f} | {ops} | "
            f"{traffic.bytes_up / objects / 1024:.1f} | {traffic.bytes_down / objects / 1024:.1f} |"
        )
        results[f"{tool} {case}"] = {
            "requests": dict(traffic.requests),
            "requests_per_object": total / objects,
            "bytes_up": traffic.bytes_up,
            "bytes_down": traffic.bytes_down,
            "connections": traffic.connections,
            "returncode": run.returncode,
        }
    for bucket in {dest for _, _, dest in cases}:
        drop_bucket(client, bucket)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=1000, help="plus 3 unicode keys")
    parser.add_argument("--size-kib", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--stolentee",
        choices=("auto", "cli", "api"),
        default="auto",
        help="cli: time `stolentee migrate-storage`; api: migrate() in a child interpreter; "
        "auto: the CLI when it has the command",
    )
    parser.add_argument("--no-rerun", action="store_true", help="skip the re-run cases")
    parser.add_argument("--requests", action="store_true", help="count S3 requests per object")
    parser.add_argument("--profile", action="store_true", help="cProfile the Python API path")
    parser.add_argument("--timeout-s", type=float, default=900, help="per run")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="write every run and the summary here")
    args = parser.parse_args()
    if min(args.objects, args.size_kib, args.concurrency, args.repeat) < 1:
        parser.error("--objects, --size-kib, --concurrency and --repeat must be >= 1")

    rclone = ensure_rclone()
    rclone_version = subprocess.run(  # noqa: S603 - rclone with a fixed argument
        [rclone, "version"], capture_output=True, text=True, check=False
    ).stdout.splitlines()[0]
    has_cli, no_verify_flag = detect_cli()
    mode = args.stolentee
    if mode == "auto":
        mode = "cli" if has_cli else "api"
    if mode == "cli" and not has_cli:
        raise SystemExit("`stolentee migrate-storage` is not there yet: use --stolentee api")
    if mode == "api":
        no_verify_flag = True  # migrate(verify_existing=False)
        why = "as asked" if has_cli else "`stolentee migrate-storage` is not in this CLI yet"
        print(
            f"NOTE: timing the Python API (stolentee.storage.migration.copier.migrate) in a child "
            f"interpreter, not the CLI ({why}): no plan listing, no progress bar, lighter imports"
        )
    objects = args.objects + len(UNICODE_KEYS)
    size = args.size_kib * 1024
    total_bytes = objects * size
    print(
        f"{objects} objects x {args.size_kib} KiB = {total_bytes / MIB:.1f} MiB, concurrency "
        f"{args.concurrency}, {args.repeat} repetitions; stolentee via {mode}; {rclone_version}; "
        f"{psutil.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    runs: list[Run] = []
    extra: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="stolentee-migrate-bench-") as tmp:
        work = Path(tmp)
        with SeaweedFS(work / "seaweedfs") as server:
            client = server.client()
            weed = psutil.Process(server.process.pid)  # type: ignore[union-attr]
            started = time.perf_counter()
            expected = fill_source(
                server, "bench-source", args.objects, size, args.concurrency, args.seed
            )
            print(f"source filled in {time.perf_counter() - started:.1f} s", flush=True)
            contenders = Contenders(
                endpoint=server.endpoint,
                source_bucket="bench-source",
                concurrency=args.concurrency,
                work_dir=work,
                stolentee_mode=mode,
                no_verify_flag=no_verify_flag,
                rclone=rclone,
            )
            extra["stolentee_startup_s"] = startup_s(contenders)
            print(
                f"stolentee start-up (entry point, no work): {extra['stolentee_startup_s']:.2f} s"
            )
            for repetition in range(args.repeat):
                order = COPY_TOOLS[repetition % 3 :] + COPY_TOOLS[: repetition % 3]
                dests = {tool: f"bench-{repetition}-{tool}" for tool in COPY_TOOLS}
                for dest in dests.values():
                    client.create_bucket(Bucket=dest)  # type: ignore[attr-defined]
                for tool in order:
                    run = timed_run(
                        contenders, weed, tool, "copy", dests[tool], repetition, args.timeout_s
                    )
                    run.check = check_bucket(client, dests[tool], expected, args.concurrency)
                    runs.append(run)
                    report_run(run, objects)
                if not args.no_rerun:
                    reruns = [(STOLENTEE, "rerun"), (RCLONE, "rerun")]
                    if no_verify_flag:
                        reruns.insert(1, (STOLENTEE, "rerun-no-verify"))
                    if repetition % 2:
                        reruns.reverse()
                    for tool, case in reruns:
                        run = timed_run(
                            contenders, weed, tool, case, dests[tool], repetition, args.timeout_s
                        )
                        run.check = check_bucket(client, dests[tool], expected, args.concurrency)
                        runs.append(run)
                        report_run(run, objects)
                for dest in dests.values():
                    drop_bucket(client, dest)
            rows = summarise(runs, objects, total_bytes)
            print_summary(rows)
            found = ratios(rows)
            print("\nratios (time of the other / time of stolentee; > 1: stolentee is faster):")
            for name, value in found.items():
                print(f"  {name}: median {value['median']:.2f}, min {value['min']:.2f}")
            print("\nwhat each verifies:")
            for tool, what in WHAT_IS_VERIFIED.items():
                print(f"  {tool}: {what}")
            last = {run.tool: run.check for run in runs if run.case == "copy"}
            print("destination objects keeping the source's metadata (last copy of each tool):")
            for tool, check in last.items():
                if check is not None:
                    print(
                        f"  {tool}: sha256 metadata {check.sha256_metadata}/{objects}, "
                        f"Content-Type {check.content_type}/{objects}, "
                        f"Cache-Control {check.cache_control}/{objects}"
                    )
            if args.requests:
                with CountingProxy(int(server.endpoint.rsplit(":", 1)[1])) as proxy:
                    contenders.endpoint = f"http://127.0.0.1:{proxy.port}"
                    extra["requests"] = count_requests(
                        contenders, proxy, client, objects, args.timeout_s
                    )
                    contenders.endpoint = server.endpoint
            if args.profile:
                extra["profile"] = profile_api(
                    server, "bench-source", objects, args.concurrency, work
                )
    failed = [
        run for run in runs if run.returncode != 0 or not run.check or not run.check.ok(objects)
    ]
    for run in failed:
        print(
            f"FAILED: {run.tool} {run.case} #{run.repetition}: exit {run.returncode}, "
            f"{run.check}\n{run.output_tail}"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "command": " ".join(sys.argv),
                    "machine": f"{platform.platform()}, {psutil.cpu_count()} CPUs",
                    "rclone": rclone_version,
                    "stolentee_mode": mode,
                    "objects": objects,
                    "size_bytes": size,
                    "concurrency": args.concurrency,
                    "runs": [asdict(run) for run in runs],
                    "summary": rows,
                    "ratios": found,
                    "verifies": WHAT_IS_VERIFIED,
                    **extra,
                },
                indent=2,
                ensure_ascii=False,
            )
        )
        print(f"wrote {args.json}")
    print("RESULT: " + ("FAIL" if failed else "PASS"))
    return 1 if failed else 0


def report_run(run: Run, objects: int) -> None:
    check = run.check
    verdict = "ok" if run.returncode == 0 and check is not None and check.ok(objects) else "FAIL"
    print(
        f"  #{run.repetition} {run.tool:<13} {run.case:<15} {run.wall_s:7.2f} s  client CPU "
        f"{run.client_cpu_s:6.2f} s  server CPU {run.server_cpu_s:6.2f} s  {verdict}",
        flush=True,
    )
    if verdict == "FAIL":
        print(f"    exit {run.returncode}, {check}\n    {run.output_tail[-600:]}")


if __name__ == "__main__":
    raise SystemExit(main())
