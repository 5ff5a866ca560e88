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

import contextlib
import hashlib
import logging
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import IO, BinaryIO, Literal, cast

from stolentee.errors import ObjectNotFoundError, StolenteeError
from stolentee.storage.base import (
    KeyEntry,
    ObjectInfo,
    ServerSideCopy,
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
    ObjectStatus,
)
from stolentee.storage.migration.plan import Listings
from stolentee.storage.migration.report import MigrationReport, Tally, run_end_record

logger = logging.getLogger(__name__)

SPOOL_MEMORY_BYTES = 8 * 1024 * 1024  # per object being copied; larger objects spill to disk
IN_FLIGHT_PER_WORKER = 2  # queued objects per worker thread: keeps workers busy, memory bounded
DEFAULT_CONCURRENCY = 8
REPLACED_CORRUPT_NOTE = "replaced corrupt destination object"
UNCHANGED_NOTE = "unchanged since verified (storage ETags of both objects as recorded)"


# --- copying one object ----------------------------------------------------------------------


class _SourceGone(Exception):
    """The object was listed but is no longer in the source."""


class _CopyFailed(Exception):
    """The object could not be copied; the message says why."""


@contextlib.contextmanager
def _stage(what: str, *, reading_source: bool = False) -> Iterator[None]:
    """Turn storage errors during ``what`` into :class:`_CopyFailed` (or :class:`_SourceGone`)."""
    try:
        yield
    except ObjectNotFoundError as exc:
        if reading_source:
            raise _SourceGone(f"listed, but gone from the source when {what}") from exc
        raise _CopyFailed(f"{what}: {exc.detail}") from exc
    except (StolenteeError, OSError) as exc:
        detail = exc.detail if isinstance(exc, StolenteeError) else str(exc)
        raise _CopyFailed(f"{what}: {detail}") from exc


def _digest(chunks: Iterable[bytes], sink: IO[bytes] | None = None) -> tuple[str, int]:
    """The sha256 and size of ``chunks``, writing them to ``sink`` when given."""
    hasher = hashlib.sha256()
    size = 0
    for chunk in chunks:
        hasher.update(chunk)
        size += len(chunk)
        if sink is not None:
            sink.write(chunk)
    return hasher.hexdigest(), size


def _close(chunks: Iterator[bytes]) -> None:
    """Release an object read that is abandoned half way (an S3 body, an open file)."""
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


def _describe_mismatch(got: tuple[str, int], info: ObjectInfo) -> str:
    return (
        f"read sha256 {got[0]} ({got[1]} bytes), expected sha256 {info.sha256} ({info.size} bytes)"
    )


@dataclass(frozen=True, slots=True)
class _Copier:
    """Copies one object at a time from ``source`` to ``dest``; shared by the worker threads.

    Requests per object on S3: a new object costs a GET of the source (its headers carry the
    sha256, content type and metadata), a PUT and a GET of the copy to verify it; one the
    destination already lists costs a HEAD of the source and a GET of the copy (or a HEAD with
    ``verify_existing`` off).
    """

    source: Storage
    dest: Storage
    run_id: str
    verify_existing: bool

    def copy(self, listed: KeyEntry, *, in_dest: bool) -> ObjectRecord:
        """Copy (or skip) ``listed``; never raises for a storage problem, records it instead."""
        try:
            return self._copy(listed, in_dest=in_dest)
        except _SourceGone as exc:
            logger.warning("%r: %s", listed.key, exc)
            return self._failure(listed, "missing", str(exc))
        except _CopyFailed as exc:
            logger.warning("could not copy %r: %s", listed.key, exc)
            return self._failure(listed, "failed", str(exc))

    def carry_over(self, earlier: ObjectRecord) -> ObjectRecord:
        """The record of an object skipped because neither copy changed since ``earlier``
        (a verified record whose ETags both listings still show)."""
        return replace(earlier, status="skipped", run_id=self.run_id, note=UNCHANGED_NOTE)

    def _copy(self, listed: KeyEntry, *, in_dest: bool) -> ObjectRecord:
        note = None
        source_etag = listed.store_etag
        if in_dest:
            with _stage("reading its head", reading_source=True):
                info = self.source.head(listed.key)
            source_etag = info.store_etag
            verdict, dest_etag = self._existing_copy(info)
            if verdict == "same":
                return self._record(
                    info,
                    "skipped",
                    verified=self.verify_existing,
                    source_etag=source_etag,
                    dest_etag=dest_etag if self.verify_existing else "",
                )
            if verdict == "corrupt":
                logger.warning("%r is corrupt in the destination; copying it again", info.key)
                note = REPLACED_CORRUPT_NOTE
        copied = self._server_side_copy(listed.key)
        if copied is not None:
            return self._record(
                copied,
                "copied",
                verified=True,
                note=note,
                source_etag=source_etag,
                dest_etag=copied.store_etag,
            )
        spool, info = self._spool_source(listed.key)
        with spool:
            dest_etag = self._put_verified(spool, info)
        return self._record(
            info,
            "copied",
            verified=True,
            note=note,
            source_etag=info.store_etag,
            dest_etag=dest_etag,
        )

    def _server_side_copy(self, key: str) -> ObjectInfo | None:
        """Copy within the storage service when the two stores allow it, then read the copy
        back against the sha256 it carries. ``None``: not possible, or the copy did not verify
        (an object without a recorded sha256): the caller streams it."""
        if not isinstance(self.dest, ServerSideCopy):
            return None
        with _stage("copying within the storage service", reading_source=True):
            if not self.dest.copy_object_from(self.source, key):
                return None
        with _stage("reading back the destination"):
            info, chunks = self.dest.open_object(key)
            if not info.sha256:
                _close(chunks)
                return None
            got = _digest(chunks)
        if got != (info.sha256, info.size):
            logger.warning(
                "%r read back wrong after a server-side copy: %s",
                key,
                _describe_mismatch(got, info),
            )
            return None
        return info

    def _existing_copy(
        self, info: ObjectInfo
    ) -> tuple[Literal["same", "corrupt", "different"], str]:
        """Whether the destination already holds ``info`` (``corrupt`` when its record says
        so but its bytes do not: a copy damaged in place), with the destination's ETag."""
        if not self.verify_existing:
            with _stage("checking the destination"):
                try:
                    existing = self.dest.head(info.key)
                except ObjectNotFoundError:
                    return "different", ""
            same = (existing.sha256, existing.size) == (info.sha256, info.size)
            return ("same" if same else "different"), existing.store_etag
        with _stage("reading back the destination"):
            try:
                existing, chunks = self.dest.open_object(info.key)
            except ObjectNotFoundError:
                return "different", ""
            claims = existing.sha256 or info.sha256, existing.size
            if claims != (info.sha256, info.size):
                _close(chunks)
                return "different", existing.store_etag
            got = _digest(chunks)
        if got == (info.sha256, info.size):
            return "same", existing.store_etag
        return "corrupt", existing.store_etag

    def _spool_source(self, key: str) -> tuple[tempfile.SpooledTemporaryFile[bytes], ObjectInfo]:
        """The source's bytes in a spool, checked against its sha256; read twice at most.

        The information comes with the bytes (one GET on S3); an object without a recorded
        sha256 (written by another tool) is described by the hash of what was read. A mismatch
        on the first read is taken for a concurrent overwrite and the object is read again.
        Returns the spool (rewound) and the information it matches.
        """
        got = ("", 0)
        info: ObjectInfo | None = None
        for _attempt in range(2):
            spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115
            try:
                with _stage("reading the source", reading_source=True):
                    info, chunks = self.source.open_object(key)
                    got = _digest(chunks, spool)
            except BaseException:
                spool.close()
                raise
            if not info.sha256:
                info = replace(info, sha256=got[0])
            if got == (info.sha256, info.size):
                spool.seek(0)
                return spool, info
            spool.close()
            logger.warning("%r changed while it was read: %s", key, _describe_mismatch(got, info))
        assert info is not None
        raise _CopyFailed(
            "the source's bytes do not match its sha256 on two reads (it keeps changing, or it "
            f"is corrupt in the source): {_describe_mismatch(got, info)}"
        )

    def _put_verified(self, spool: tempfile.SpooledTemporaryFile[bytes], info: ObjectInfo) -> str:
        """Write the spool to the destination and read it back; one re-copy on a mismatch.
        Returns the destination's ETag (as the read-back saw it)."""
        got = ("", 0)
        for _attempt in range(2):
            spool.seek(0)
            with _stage("writing to the destination"):
                self.dest.put(
                    info.key,
                    cast(BinaryIO, spool),
                    content_type=info.content_type,
                    metadata=info.metadata,
                )
            with _stage("reading back the destination"):
                written, chunks = self.dest.open_object(info.key)
                got = _digest(chunks)
            if got == (info.sha256, info.size):
                return written.store_etag
            logger.warning("%r read back wrong: %s", info.key, _describe_mismatch(got, info))
        raise _CopyFailed(
            "the destination's copy does not match after a re-copy: "
            + _describe_mismatch(got, info)
        )

    def _failure(self, listed: KeyEntry, status: ObjectStatus, error: str) -> ObjectRecord:
        return ObjectRecord(
            key=listed.key,
            size=listed.size,
            sha256="",
            status=status,
            verified=False,
            run_id=self.run_id,
            error=error,
        )

    def _record(
        self,
        info: ObjectInfo,
        status: ObjectStatus,
        *,
        verified: bool,
        error: str | None = None,
        note: str | None = None,
        source_etag: str = "",
        dest_etag: str = "",
    ) -> ObjectRecord:
        return ObjectRecord(
            key=info.key,
            size=info.size,
            sha256=info.sha256,
            status=status,
            verified=verified,
            run_id=self.run_id,
            error=error,
            note=note,
            source_etag=source_etag,
            dest_etag=dest_etag,
        )


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
    copier = _Copier(source=source, dest=dest, run_id=run_id, verify_existing=verify_existing)
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
