"""Copy every object from one storage backend to another: verified, resumable, never deleting.

:func:`migrate` lists the source and copies each object concurrently. An object is read from the
source into a spool (memory up to :data:`SPOOL_MEMORY_BYTES`, then a temp file) while it is
hashed, checked against the source's sha256, written to the destination with its content type and
metadata, and read back from the destination to compare sha256 and size (never ETags, which
differ between backends and for multipart uploads). Between two stores of one S3 service and
account the copy is server-side (``CopyObject``), then read back against the sha256 it carries.

Every finished object is appended to a :class:`Manifest` (JSON lines, flushed per line), so a
killed run leaves a valid record of what was done. A re-run skips objects the destination already
holds with the same sha256, reading them back first unless told not to, and so resumes where the
last run stopped. Told not to (``verify_existing=False``), a re-run also trusts the manifest: an
object whose source and destination both still list the storage service's ETags recorded when
it was verified (neither was rewritten since) is skipped from the listings alone, with no
request of its own. :func:`check_delete_allowed` and :func:`delete_source` use the manifest to
delete the source only once every object in it was copied and verified.

Manifest records, one JSON object per line::

    {"type": "run", "run_id", "started_at", "source", "dest", "prefix"}
    {"type": "object", "key", "size", "sha256", "status", "verified", "error", "note", "run_id",
     "source_etag", "dest_etag"}
    {"type": "run_end", "run_id", "finished_at", "copied", "skipped", "failed", "missing",
     "bytes_copied", "elapsed_s", "interrupted"}

Other record types (appended by other tools) are kept and returned by :meth:`Manifest.records`.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime

from stolentee.errors import StolenteeError
from stolentee.storage.base import (
    KeyEntry,
    Storage,
    validate_prefix,
)
from stolentee.storage.migration.events import (
    ProgressCallback,
)
from stolentee.storage.migration.manifest import (
    VERIFIABLE_STATUSES,
    Manifest,
    ObjectRecord,
)
from stolentee.storage.migration.objects import ObjectCopier
from stolentee.storage.migration.plan import Listings
from stolentee.storage.migration.report import MigrationReport, Tally, run_end_record

logger = logging.getLogger(__name__)

IN_FLIGHT_PER_WORKER = 2  # queued objects per worker thread: keeps workers busy, memory bounded
DEFAULT_CONCURRENCY = 8


# --- copying one object ----------------------------------------------------------------------


# --- the migration ---------------------------------------------------------------------------


def migrate(
    source: Storage,
    dest: Storage,
    *,
    manifest: Manifest,
    concurrency: int = DEFAULT_CONCURRENCY,
    prefix: str = "",
    verify_existing: bool = True,
    progress: ProgressCallback | None = None,
    stop: threading.Event | None = None,
    total_objects: int | None = None,
    total_bytes: int | None = None,
    listings: Listings | None = None,
) -> MigrationReport:
    """Copy every object under ``prefix`` from ``source`` to ``dest``; see the module docstring.

    ``listings`` (from :func:`list_both`, same prefix) stand in for the two listings this
    function makes otherwise.

    ``progress`` is called after each object, from the worker threads but never two at a time.
    Setting ``stop`` starts no new object; those in flight finish and the report is marked
    interrupted. Storage errors of single objects are recorded, not raised; a manifest that
    cannot be written (:class:`ManifestError`) aborts the run.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    validate_prefix(prefix)
    if listings is not None and listings.prefix != prefix:
        raise ValueError(f"listings of prefix {listings.prefix!r} for a migration of {prefix!r}")
    run_id = uuid.uuid4().hex
    started = time.monotonic()
    manifest.append(
        {
            "type": "run",
            "run_id": run_id,
            "started_at": datetime.now(UTC).isoformat(),
            "source": repr(source),
            "dest": repr(dest),
            "prefix": prefix,
        }
    )
    copier = ObjectCopier(source=source, dest=dest, run_id=run_id, verify_existing=verify_existing)
    tally = Tally(
        manifest=manifest, progress=progress, total_objects=total_objects, total_bytes=total_bytes
    )
    if stop is None:
        stop = threading.Event()

    # One listing of the destination spares a request per object that is not there yet.
    in_dest: Mapping[str, KeyEntry]
    if listings is not None:
        in_dest = listings.dest
    else:
        in_dest = {entry.key: entry for entry in dest.iterate_keys(prefix)}
    # Not reading copies back: what the manifest verified and neither store rewrote since is
    # skipped from the listings alone.
    verified_before = {} if verify_existing else _verified_with_etags(manifest)

    def to_copy(listed_keys: Iterable[KeyEntry]) -> Iterator[KeyEntry]:
        """The listed objects that need a look; the others are recorded here, in line."""
        for listed in listed_keys:
            existing = in_dest.get(listed.key)
            earlier = verified_before.get(listed.key)
            if (
                earlier is not None
                and existing is not None
                and _unchanged(earlier, listed, existing)
                and not stop.is_set()
            ):
                tally.finish(copier.carry_over(earlier))
            else:
                yield listed

    def work(listed: KeyEntry) -> None:
        if stop.is_set():
            tally.skip_unstarted()
            return
        tally.finish(copier.copy(listed, in_dest=listed.key in in_dest))

    listing_errors: list[str] = []
    source_keys = (
        listings.source if listings is not None else _listing(source, prefix, listing_errors)
    )
    interrupted = _run_bounded(
        to_copy(source_keys),
        work,
        concurrency=concurrency,
        stop=stop,
    )
    report = tally.report(
        run_id=run_id,
        elapsed_s=time.monotonic() - started,
        interrupted=interrupted,
        listing_error=listing_errors[0] if listing_errors else None,
    )
    manifest.append(run_end_record(report))
    logger.info(
        "migration %s: %d copied, %d skipped, %d failed, %d missing%s",
        run_id,
        report.copied,
        report.skipped,
        report.failed,
        report.missing,
        " (interrupted)" if report.interrupted else "",
    )
    return report


def _verified_with_etags(manifest: Manifest) -> dict[str, ObjectRecord]:
    """Latest records that are verified copies or skips and know both objects' ETags."""
    return {
        key: record
        for key, record in manifest.latest_objects().items()
        if record.verified
        and record.status in VERIFIABLE_STATUSES
        and record.source_etag
        and record.dest_etag
    }


def _unchanged(earlier: ObjectRecord, source: KeyEntry, dest: KeyEntry) -> bool:
    """Both listings show the objects exactly as ``earlier`` verified them."""
    return (
        source.store_etag == earlier.source_etag
        and dest.store_etag == earlier.dest_etag
        and source.size == dest.size == earlier.size
    )


def _listing(source: Storage, prefix: str, errors: list[str]) -> Iterator[KeyEntry]:
    """The source's keys; a listing failure ends the listing and is put in ``errors``."""
    try:
        yield from source.iterate_keys(prefix)
    except (StolenteeError, OSError) as exc:
        logger.error("listing the source failed: %s", exc)
        errors.append(f"listing the source failed: {exc}")


def _run_bounded(
    items: Iterable[KeyEntry],
    work: Callable[[KeyEntry], None],
    *,
    concurrency: int,
    stop: threading.Event,
) -> bool:
    """Run ``work`` on each item with ``concurrency`` threads, never queueing many more.

    Returns whether ``stop`` cut the items short. An exception ``work`` raises (a bug, or the
    manifest failing) cancels what has not started and is re-raised once the rest has finished.
    """
    max_in_flight = concurrency * IN_FLIGHT_PER_WORKER
    pending: set[Future[None]] = set()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="migrate") as pool:
        try:
            for item in items:
                while len(pending) >= max_in_flight:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    _raise_first_error(done)
                if stop.is_set():
                    return True
                pending.add(pool.submit(work, item))
            done, pending = wait(pending)
            _raise_first_error(done)
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return False


def _raise_first_error(done: Iterable[Future[None]]) -> None:
    for future in done:
        future.result()
