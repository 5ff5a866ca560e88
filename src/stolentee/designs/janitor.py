"""Objects no design points at: ``stolentee storage gc [--dry-run]``.

``POST /v1/designs`` stores the original before it inserts the design, and removes it again
when the insert fails; a process killed between the two, or a direct upload (presigned POST)
that never became a design, still leaves an original nobody references. A cutout is written
before its job records it, so a run whose lease was lost can leave one too. Both kinds live in
the design prefixes only (``uploads/`` and ``assets/cutouts/``); nothing else in the store is
looked at.

An object is an orphan when no design names it (``original_key`` or ``cutout_key``) and it is
older than ``older_than`` (a day by default: far longer than any upload or job takes, so work in
progress is never swept). Each orphan is checked once more right before it is deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select

from stolentee.db.engine import Database
from stolentee.db.models import Design
from stolentee.designs.pipeline import CUTOUTS_PREFIX
from stolentee.storage.base import ObjectInfo, Storage

log = logging.getLogger(__name__)

DESIGN_PREFIXES = ("uploads/", CUTOUTS_PREFIX)
DEFAULT_OLDER_THAN = timedelta(days=1)
_LOOKUP_BATCH = 500


@dataclass(slots=True)
class SweepReport:
    """What one sweep found (and, unless a dry run, deleted)."""

    scanned: int = 0
    orphans: list[ObjectInfo] = field(default_factory=list)
    deleted: int = 0
    kept_young: int = 0  # unreferenced but newer than the cut-off: maybe work in progress

    @property
    def orphan_bytes(self) -> int:
        return sum(info.size for info in self.orphans)


def sweep_orphans(
    *,
    database: Database,
    storage: Storage,
    older_than: timedelta = DEFAULT_OLDER_THAN,
    dry_run: bool = True,
    now: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> SweepReport:
    """Find (and unless ``dry_run`` delete) the orphaned objects of the design prefixes."""
    cutoff = (now or datetime.now(UTC)) - older_than
    report = SweepReport()
    for batch in _batches(_objects(storage), _LOOKUP_BATCH):
        report.scanned += len(batch)
        referenced = _referenced(database, [info.key for info in batch])
        for info in batch:
            if info.key in referenced:
                continue
            if info.last_modified >= cutoff:
                report.kept_young += 1
                continue
            report.orphans.append(info)
            if not dry_run and not _referenced(database, [info.key]):
                report.deleted += storage.delete(info.key)
        if progress is not None:
            progress(report.scanned)
    if report.deleted:
        log.info("storage gc: deleted %d orphaned object(s)", report.deleted)
    return report


def _objects(storage: Storage) -> Iterator[ObjectInfo]:
    for prefix in DESIGN_PREFIXES:
        yield from storage.iterate(prefix)


def _batches(items: Iterator[ObjectInfo], size: int) -> Iterator[list[ObjectInfo]]:
    batch: list[ObjectInfo] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _referenced(database: Database, keys: Sequence[str]) -> set[str]:
    """The keys some design names as its original or its cutout."""
    stmt = select(Design.original_key, Design.cutout_key).where(
        or_(Design.original_key.in_(keys), Design.cutout_key.in_(keys))
    )
    with database.session() as session:
        rows = session.execute(stmt).all()
    wanted = set(keys)
    return {key for row in rows for key in row if key in wanted}
