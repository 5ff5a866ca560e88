"""What a migration would copy, before it copies anything: the listings of both stores, and a
summary with a sample."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from stolentee.storage.base import (
    KeyEntry,
    Storage,
    validate_prefix,
)

DEFAULT_SAMPLE_SIZE = 10


@dataclass(frozen=True, slots=True)
class MigrationPlan:
    """What a migration would copy: the number of source objects and their total size."""

    prefix: str
    object_count: int
    total_bytes: int
    sample: tuple[KeyEntry, ...]  # the first few keys and sizes, in listing order


def plan(
    source: Storage, *, prefix: str = "", sample_size: int = DEFAULT_SAMPLE_SIZE
) -> MigrationPlan:
    """List the source under ``prefix``: object count, total bytes and the first few objects."""
    validate_prefix(prefix)
    return _plan_of(source.iterate_keys(prefix), prefix=prefix, sample_size=sample_size)


def _plan_of(entries: Iterable[KeyEntry], *, prefix: str, sample_size: int) -> MigrationPlan:
    count = total = 0
    sample: list[KeyEntry] = []
    for info in entries:
        count += 1
        total += info.size
        if len(sample) < sample_size:
            sample.append(info)
    return MigrationPlan(prefix=prefix, object_count=count, total_bytes=total, sample=tuple(sample))


@dataclass(frozen=True, slots=True)
class Listings:
    """Both stores listed before a migration starts (:func:`list_both`).

    Handed to :func:`migrate`, they replace its own listings: a caller that shows the plan first
    (the CLI) lists each store once instead of the source twice. The source's keys are then held
    in memory for the run (the destination's always are); objects written to the source after
    the listing are left to the next run, as with any listing.
    """

    prefix: str
    source: tuple[KeyEntry, ...]
    dest: Mapping[str, KeyEntry]

    def plan(self, sample_size: int = DEFAULT_SAMPLE_SIZE) -> MigrationPlan:
        return _plan_of(self.source, prefix=self.prefix, sample_size=sample_size)


def list_both(source: Storage, dest: Storage, *, prefix: str = "") -> Listings:
    """List the source and the destination under ``prefix`` at the same time (two threads).

    A failing listing raises its error, as :func:`plan` does.
    """
    validate_prefix(prefix)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="list-dest") as pool:
        dest_listing = pool.submit(
            lambda: {entry.key: entry for entry in dest.iterate_keys(prefix)}
        )
        source_keys = tuple(source.iterate_keys(prefix))
        in_dest = dest_listing.result()
    return Listings(prefix=prefix, source=source_keys, dest=in_dest)
