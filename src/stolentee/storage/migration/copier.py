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
import json
import logging
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, BinaryIO, Literal, cast, get_args

from stolentee.errors import ConflictError, ObjectNotFoundError, StolenteeError, StorageError
from stolentee.storage.base import (
    KeyEntry,
    ObjectInfo,
    ServerSideCopy,
    Storage,
    validate_prefix,
)

logger = logging.getLogger(__name__)

SPOOL_MEMORY_BYTES = 8 * 1024 * 1024  # per object being copied; larger objects spill to disk
IN_FLIGHT_PER_WORKER = 2  # queued objects per worker thread: keeps workers busy, memory bounded
DEFAULT_CONCURRENCY = 8
DEFAULT_SAMPLE_SIZE = 10
KEYS_NAMED_IN_ERRORS = 10  # how many offending keys an error message lists
REPLACED_CORRUPT_NOTE = "replaced corrupt destination object"
UNCHANGED_NOTE = "unchanged since verified (storage ETags of both objects as recorded)"

ObjectStatus = Literal["copied", "skipped", "failed", "missing"]
ProgressStatus = Literal["copied", "skipped", "failed", "missing", "deleted"]
OBJECT_STATUSES: tuple[ObjectStatus, ...] = get_args(ObjectStatus)
VERIFIABLE_STATUSES: tuple[ObjectStatus, ...] = ("copied", "skipped")


class DeleteRefusedError(ConflictError):
    """The source may not be deleted: some of its objects are not verified copies (yet)."""

    code = "delete_source_refused"
    title = "Source deletion refused"


class ManifestError(StorageError):
    """The migration manifest cannot be opened or written."""

    code = "manifest_error"
    title = "Migration manifest error"


# --- the manifest ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObjectRecord:
    """The outcome of one object in one run, as the manifest stores it."""

    key: str
    size: int
    sha256: str
    status: ObjectStatus
    verified: bool
    run_id: str
    error: str | None = None
    note: str | None = None
    # The storage services' ETags of the two objects when this record was made ("" unknown):
    # a later run that lists both unchanged need not look at either again.
    source_etag: str = ""
    dest_etag: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The manifest line of this record."""
        return {
            "type": "object",
            "key": self.key,
            "size": self.size,
            "sha256": self.sha256,
            "status": self.status,
            "verified": self.verified,
            "error": self.error,
            "note": self.note,
            "run_id": self.run_id,
            "source_etag": self.source_etag,
            "dest_etag": self.dest_etag,
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> ObjectRecord | None:
        """The record in a parsed manifest line, ``None`` when it is malformed."""
        status = record.get("status")
        fields = (record.get("key"), record.get("sha256"), record.get("run_id"))
        size = record.get("size")
        if (
            status not in OBJECT_STATUSES
            or not all(isinstance(value, str) for value in fields)
            or not isinstance(size, int)
            or not isinstance(record.get("verified"), bool)
        ):
            return None
        error, note = record.get("error"), record.get("note")
        source_etag, dest_etag = record.get("source_etag"), record.get("dest_etag")
        return cls(
            key=record["key"],
            size=size,
            sha256=record["sha256"],
            status=cast(ObjectStatus, status),
            verified=record["verified"],
            run_id=record["run_id"],
            error=error if isinstance(error, str) else None,
            note=note if isinstance(note, str) else None,
            source_etag=source_etag if isinstance(source_etag, str) else "",
            dest_etag=dest_etag if isinstance(dest_etag, str) else "",
        )


class Manifest:
    """An append-only JSON-lines log of migration runs, safe to append to from many threads.

    Each line is written whole and flushed, so a killed process leaves every finished record
    readable; a torn last line is skipped when reading (and closed off before appending again).
    """

    def __init__(self, *, path: Path, handle: IO[bytes]) -> None:
        self.path = path
        self._handle = handle
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Manifest(path={str(self.path)!r})"

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Manifest:
        """Open ``path`` for appending, creating it and its parent directories as needed."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = path.open("ab")
        except OSError as exc:
            raise ManifestError(f"cannot open the manifest {str(path)!r}: {exc.strerror}") from exc
        manifest = cls(path=path, handle=handle)
        manifest._close_torn_line()
        return manifest

    def __enter__(self) -> Manifest:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the file; appending afterwards is an error."""
        with self._lock:
            self._handle.close()

    def append(self, record: Mapping[str, Any]) -> None:
        """Write ``record`` as one line and flush it."""
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        data = line.encode("utf-8", "backslashreplace")  # lone surrogates stay valid JSON
        with self._lock:
            try:
                self._handle.write(data)
                self._handle.flush()
            except OSError as exc:
                msg = f"cannot write to the manifest {str(self.path)!r}: {exc.strerror}"
                raise ManifestError(msg) from exc

    def records(self, record_type: str | None = None) -> list[dict[str, Any]]:
        """Every readable record in file order (only those of ``record_type`` when given)."""
        return [
            record
            for record in self.iter_records()
            if record_type is None or record.get("type") == record_type
        ]

    def iter_records(self) -> Iterator[dict[str, Any]]:
        """The records one by one; unreadable lines (a torn write) are logged and skipped."""
        try:
            fh = self.path.open("rb")
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ManifestError(f"cannot read the manifest {str(self.path)!r}: {exc}") from exc
        with fh:
            for number, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                record = _parse_line(raw)
                if record is None:
                    logger.warning("skipping unreadable line %d of %s", number, self.path)
                    continue
                yield record

    def latest_objects(self) -> dict[str, ObjectRecord]:
        """The latest object record of each key (later lines win)."""
        latest: dict[str, ObjectRecord] = {}
        for raw in self.iter_records():
            if raw.get("type") != "object":
                continue
            record = ObjectRecord.from_dict(raw)
            if record is None:
                logger.warning("skipping a malformed object record in %s: %r", self.path, raw)
                continue
            latest[record.key] = record
        return latest

    def verified_keys(self) -> dict[str, str]:
        """Key → sha256 of every key whose latest record is a verified copy or skip."""
        return {
            key: record.sha256
            for key, record in self.latest_objects().items()
            if record.verified and record.status in VERIFIABLE_STATUSES
        }

    def _close_torn_line(self) -> None:
        """End a torn last line (a killed writer) so the next record starts on a line of its own."""
        try:
            with self.path.open("rb") as fh:
                if fh.seek(0, os.SEEK_END) == 0:
                    return
                fh.seek(-1, os.SEEK_END)
                last = fh.read(1)
        except OSError as exc:
            raise ManifestError(f"cannot read the manifest {str(self.path)!r}: {exc}") from exc
        if last != b"\n":
            logger.warning(
                "the last line of %s is torn (a killed run); keeping it apart", self.path
            )
            with self._lock:
                self._handle.write(b"\n")
                self._handle.flush()


def _parse_line(raw: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return record if isinstance(record, dict) else None


# --- planning (dry run) ----------------------------------------------------------------------


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


# --- progress and the report -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """Sent after each object; ``bytes_done`` counts skipped objects too, so an ETA holds."""

    objects_done: int
    bytes_done: int
    total_objects: int | None
    total_bytes: int | None
    key: str
    status: ProgressStatus


ProgressCallback = Callable[[ProgressEvent], None]


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
class _Tally:
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
    tally = _Tally(
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
    manifest.append(_run_end_record(report))
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


def _run_end_record(report: MigrationReport) -> dict[str, Any]:
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


# --- deleting the source once everything is copied -------------------------------------------


@dataclass(frozen=True, slots=True)
class DeletePlan:
    """The source objects :func:`delete_source` may delete, with the heads they were checked at."""

    prefix: str
    objects: tuple[ObjectInfo, ...]

    @property
    def object_count(self) -> int:
        return len(self.objects)

    @property
    def total_bytes(self) -> int:
        return sum(info.size for info in self.objects)


def check_delete_allowed(source: Storage, manifest: Manifest, *, prefix: str = "") -> DeletePlan:
    """The plan to delete the source under ``prefix``, if every object in it is a verified copy.

    Each listed object's sha256 must match that of its latest manifest record, and that record
    must be a verified copy or skip. Otherwise :class:`DeleteRefusedError` names the
    objects never verified and those changed since.
    """
    validate_prefix(prefix)
    verified = manifest.verified_keys()
    covered: list[ObjectInfo] = []
    unverified: list[str] = []
    changed: list[str] = []
    for info in source.iterate(prefix):
        expected = verified.get(info.key)
        if expected is None:
            unverified.append(info.key)
        elif expected != info.sha256:
            changed.append(info.key)
        else:
            covered.append(info)
    if unverified or changed:
        raise DeleteRefusedError(
            _refusal_detail(unverified, changed),
            unverified_count=len(unverified),
            changed_count=len(changed),
            unverified=unverified[:KEYS_NAMED_IN_ERRORS],
            changed=changed[:KEYS_NAMED_IN_ERRORS],
        )
    return DeletePlan(prefix=prefix, objects=tuple(covered))


def _refusal_detail(unverified: list[str], changed: list[str]) -> str:
    parts = []
    if unverified:
        parts.append(f"{len(unverified)} never copied and verified (e.g. {unverified[0]!r})")
    if changed:
        parts.append(f"{len(changed)} changed since they were copied (e.g. {changed[0]!r})")
    return "refusing to delete the source: " + "; ".join(parts) + "; run the migration again"


def delete_source(
    source: Storage, plan: DeletePlan, *, progress: ProgressCallback | None = None
) -> int:
    """Delete the objects of ``plan`` from ``source``; the number actually deleted.

    An object whose sha256 changed since the plan was made (a new upload under the same key) is
    kept and logged; one already gone is counted as ``missing`` in the progress events.
    """
    deleted = bytes_done = 0
    for done, planned in enumerate(plan.objects, start=1):
        status = _delete_one(source, planned)
        deleted += status == "deleted"
        bytes_done += planned.size
        if progress is not None:
            progress(
                ProgressEvent(
                    objects_done=done,
                    bytes_done=bytes_done,
                    total_objects=plan.object_count,
                    total_bytes=plan.total_bytes,
                    key=planned.key,
                    status=status,
                )
            )
    return deleted


def _delete_one(source: Storage, planned: ObjectInfo) -> ProgressStatus:
    try:
        current = source.head(planned.key)
    except ObjectNotFoundError:
        return "missing"
    if current.sha256 != planned.sha256:
        logger.warning("%r changed since the delete was planned; keeping it", planned.key)
        return "skipped"
    return "deleted" if source.delete(planned.key) else "missing"
