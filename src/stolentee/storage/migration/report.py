"""The outcome of a migration run: per-status counts, bytes, failures, and the manifest's closing
record."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stolentee.storage.migration.events import (
    ProgressCallback,
    ProgressEvent,
)
from stolentee.storage.migration.manifest import (
    OBJECT_STATUSES,
    VERIFIABLE_STATUSES,
    Manifest,
    ObjectRecord,
    ObjectStatus,
)


@dataclass(frozen=True, slots=True)
class ObjectFailure:
    """An object that was not copied: ``status`` is ``failed`` or ``missing``."""

    key: str
    status: ObjectStatus
    error: str


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """The outcome of one :func:`migrate` run."""

    run_id: str
    copied: int
    skipped: int
    failed: int
    missing: int
    bytes_copied: int
    elapsed_s: float
    interrupted: bool
    failures: tuple[ObjectFailure, ...] = ()
    listing_error: str | None = None

    @property
    def objects_done(self) -> int:
        return self.copied + self.skipped + self.failed + self.missing

    @property
    def ok(self) -> bool:
        """Every listed object is in the destination and verified, and the run was complete."""
        return (
            self.failed == 0
            and self.missing == 0
            and not self.interrupted
            and self.listing_error is None
        )


@dataclass(slots=True)
class Tally:
    """Counts finished objects, writes their records and reports progress, under one lock."""

    manifest: Manifest
    progress: ProgressCallback | None
    total_objects: int | None
    total_bytes: int | None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OBJECT_STATUSES, 0))
    bytes_done: int = 0
    bytes_copied: int = 0
    not_started: int = 0
    failures: list[ObjectFailure] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def finish(self, record: ObjectRecord) -> None:
        self.manifest.append(record.to_dict())
        with self.lock:
            self.counts[record.status] += 1
            self.bytes_done += record.size
            if record.status == "copied":
                self.bytes_copied += record.size
            if record.error is not None and record.status not in VERIFIABLE_STATUSES:
                self.failures.append(ObjectFailure(record.key, record.status, record.error))
            if self.progress is not None:
                self.progress(
                    ProgressEvent(
                        objects_done=sum(self.counts.values()),
                        bytes_done=self.bytes_done,
                        total_objects=self.total_objects,
                        total_bytes=self.total_bytes,
                        key=record.key,
                        status=record.status,
                    )
                )

    def skip_unstarted(self) -> None:
        with self.lock:
            self.not_started += 1

    def report(
        self, *, run_id: str, elapsed_s: float, interrupted: bool, listing_error: str | None
    ) -> MigrationReport:
        with self.lock:
            return MigrationReport(
                run_id=run_id,
                copied=self.counts["copied"],
                skipped=self.counts["skipped"],
                failed=self.counts["failed"],
                missing=self.counts["missing"],
                bytes_copied=self.bytes_copied,
                elapsed_s=elapsed_s,
                interrupted=interrupted or self.not_started > 0,
                failures=tuple(self.failures),
                listing_error=listing_error,
            )


def run_end_record(report: MigrationReport) -> dict[str, Any]:
    return {
        "type": "run_end",
        "run_id": report.run_id,
        "finished_at": datetime.now(UTC).isoformat(),
        "copied": report.copied,
        "skipped": report.skipped,
        "failed": report.failed,
        "missing": report.missing,
        "bytes_copied": report.bytes_copied,
        "elapsed_s": round(report.elapsed_s, 3),
        "interrupted": report.interrupted,
        "listing_error": report.listing_error,
    }
