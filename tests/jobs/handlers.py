"""Trivial job kinds for the worker tests, shared by in-process workers and worker_main.

``sleep-and-write`` stands in for the design pipeline: it sleeps, then writes a
content-addressed file (``<out>/cutouts/<sha256>.png``, atomically, as the real pipeline
does), and logs ``start`` / ``end`` lines to ``<out>/runs.log`` so a test can count how many
times each job ran and finished. ``explode`` always raises; ``reject`` raises a permanent error.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

from stolentee.db.models import Job
from stolentee.jobs.heartbeat import Heartbeat
from stolentee.jobs.runs import Handler, PermanentJobError

SLEEP_AND_WRITE = "sleep-and-write"
EXPLODE = "explode"
REJECT = "reject"


def log_line(out: Path, line: str) -> None:
    """One ``write`` on an O_APPEND descriptor: lines from many processes never interleave."""
    fd = os.open(out / "runs.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


def read_log(out: Path) -> list[tuple[str, str, int]]:
    """``(event, job_id, pid)`` for every line of ``runs.log``."""
    path = out / "runs.log"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        event, job_id, pid = line.split()
        rows.append((event, job_id, int(pid)))
    return rows


def content_for(payload: dict[str, Any]) -> bytes:
    return f"cutout of design {payload['n']}".encode()


def sleep_and_write(job: Job, heartbeat: Heartbeat) -> dict[str, Any]:
    out = Path(job.payload["out"])
    log_line(out, f"start {job.id} {os.getpid()}")
    deadline = time.monotonic() + float(job.payload.get("sleep_s", 0))
    while time.monotonic() < deadline:
        time.sleep(min(0.02, max(0.0, deadline - time.monotonic())))
        if job.payload.get("cooperative"):
            heartbeat.check()
    data = content_for(job.payload)
    digest = hashlib.sha256(data).hexdigest()
    target = out / "cutouts" / f"{digest}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{digest}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    temp.write_bytes(data)
    os.replace(temp, target)
    log_line(out, f"end {job.id} {os.getpid()}")
    return {"sha256": digest, "pid": os.getpid()}


def explode(job: Job, heartbeat: Heartbeat) -> dict[str, Any]:
    raise RuntimeError(f"boom {job.payload.get('n', '')}".strip())


def reject(job: Job, heartbeat: Heartbeat) -> dict[str, Any]:
    raise PermanentJobError("not an image")


HANDLERS: dict[str, Handler] = {SLEEP_AND_WRITE: sleep_and_write, EXPLODE: explode, REJECT: reject}
