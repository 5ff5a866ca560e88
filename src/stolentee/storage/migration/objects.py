"""Copying one object, verified: read from the source while hashing, written to the destination,
read back and compared, with every failure named by its stage."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import IO, BinaryIO, Literal, cast

from stolentee.errors import ObjectNotFoundError, StolenteeError
from stolentee.storage.base import (
    KeyEntry,
    ObjectInfo,
    ServerSideCopy,
    Storage,
)
from stolentee.storage.migration.manifest import (
    ObjectRecord,
    ObjectStatus,
)

logger = logging.getLogger(__name__)


SPOOL_MEMORY_BYTES = 8 * 1024 * 1024  # per object being copied; larger objects spill to disk


REPLACED_CORRUPT_NOTE = "replaced corrupt destination object"


UNCHANGED_NOTE = "unchanged since verified (storage ETags of both objects as recorded)"


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


def digest(chunks: Iterable[bytes], sink: IO[bytes] | None = None) -> tuple[str, int]:
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
class ObjectCopier:
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
            got = digest(chunks)
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
            got = digest(chunks)
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
                    got = digest(chunks, spool)
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
                got = digest(chunks)
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
