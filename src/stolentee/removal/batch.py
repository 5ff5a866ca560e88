"""Batch background removal over files and folders (``stolentee remove``), in parallel threads.

One shared engine serves every thread; onnxruntime and Pillow release the GIL for the heavy
work. Outputs are written atomically (temporary file, then rename), so an interrupted run never
leaves a half-written cutout that a re-run would skip.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from stolentee.errors import InvalidFormatError, StolenteeError
from stolentee.removal.base import OutputFormat, RemovalOptions, Remover

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
OUTPUT_SUFFIXES = {
    OutputFormat.PNG: ".png",
    OutputFormat.WEBP: ".webp",
    OutputFormat.JPG: ".jpg",
    OutputFormat.ZIP: ".zip",
}


@dataclass(frozen=True, slots=True)
class BatchItem:
    source: Path
    target: Path


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    item: BatchItem
    status: str  # "done", "skipped" or "failed"
    error: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class BatchPlan:
    items: list[BatchItem]
    problems: list[tuple[Path, str]]  # inputs that cannot be processed, with the reason


def plan_batch(inputs: Iterable[Path], out_dir: Path, fmt: OutputFormat) -> BatchPlan:
    """Map every input file (folders: recursively, image suffixes only) to its output path."""
    suffix = OUTPUT_SUFFIXES.get(fmt)
    if suffix is None:
        raise InvalidFormatError(
            "format auto picks PNG or JPG per image, so output names are unknown in advance; "
            "choose png, webp, jpg or zip"
        )
    items: list[BatchItem] = []
    problems: list[tuple[Path, str]] = []
    claimed: dict[Path, Path] = {}

    def add(source: Path, relative: Path) -> None:
        target = out_dir / relative.with_suffix(suffix)
        other = claimed.get(target)
        if other is not None:
            problems.append((source, f"its output {target} is also the output of {other}"))
            return
        claimed[target] = source
        items.append(BatchItem(source=source, target=target))

    for path in inputs:
        if path.is_dir():
            files = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not files:
                problems.append((path, "folder holds no images"))
            for file in files:
                add(file, file.relative_to(path))
        elif path.is_file():
            add(path, Path(path.name))
        else:
            problems.append((path, "no such file or folder"))
    return BatchPlan(items=items, problems=problems)


def _write_atomically(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def process_item(
    remover: Remover, item: BatchItem, options: RemovalOptions, *, overwrite: bool
) -> BatchOutcome:
    if not overwrite and item.target.exists():
        return BatchOutcome(item, "skipped")
    started = time.perf_counter()
    try:
        result = remover.remove(item.source.read_bytes(), options)
        _write_atomically(item.target, result.data)
    except StolenteeError as exc:
        return BatchOutcome(item, "failed", exc.detail, time.perf_counter() - started)
    except OSError as exc:
        return BatchOutcome(item, "failed", f"{exc.strerror or exc}", time.perf_counter() - started)
    return BatchOutcome(item, "done", None, time.perf_counter() - started)


def run_batch(
    remover: Remover,
    items: list[BatchItem],
    options: RemovalOptions,
    *,
    jobs: int,
    overwrite: bool,
    on_outcome: Callable[[BatchOutcome], None] | None = None,
) -> list[BatchOutcome]:
    """Process ``items`` with ``jobs`` threads; ``on_outcome`` is called as each one finishes."""
    outcomes: list[BatchOutcome] = []
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="remove") as pool:
        futures = [
            pool.submit(process_item, remover, item, options, overwrite=overwrite) for item in items
        ]
        for future in as_completed(futures):
            outcome = future.result()
            outcomes.append(outcome)
            if on_outcome is not None:
                on_outcome(outcome)
    return outcomes
