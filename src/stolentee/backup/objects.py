"""Objects into and out of a backup target, verified both ways.

Into the target: the object is read from the store while it is hashed (into a spool: memory, then
a temporary file), checked against the sha256 the store records, written under its content
address unless the target already holds those bytes, and read back and compared. Out of it: the
bytes at the content address are hashed as they are read, checked, written to the store under
the object's key and read back. A mismatch anywhere is an error naming the object, never a
silent copy.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import IO

from stolentee.backup.manifest import BackupError, ObjectEntry, object_key
from stolentee.backup.targets import BackupTarget
from stolentee.errors import ObjectNotFoundError, StolenteeError
from stolentee.storage.base import ObjectInfo, Storage
from stolentee.storage.migration.objects import digest

SPOOL_MEMORY_BYTES = 8 * 1024 * 1024  # per object in flight; larger ones spill to disk


class SourceGone(Exception):
    """The object was listed but is gone from the store (deleted meanwhile)."""


@dataclass(frozen=True, slots=True)
class Saved:
    entry: ObjectEntry
    copied: bool  # False: the target already held these bytes (an earlier backup's)


def file_digest(handle: IO[bytes]) -> tuple[str, int]:
    return digest(iter(lambda: handle.read(1 << 20), b""), None)


def read_digest(target: BackupTarget, key: str) -> tuple[str, int]:
    """The sha256 and size of a target file, read whole; :class:`BackupError` when missing."""
    try:
        _, chunks = target.open(key)
        return digest(chunks, None)
    except ObjectNotFoundError:
        raise BackupError(f"{key} is missing from the backup target") from None
    except StolenteeError as exc:
        raise BackupError(f"{key} cannot be read from the backup target: {exc.detail}") from exc


def save_object(store: Storage, listed: ObjectInfo, target: BackupTarget, pool: set[str]) -> Saved:
    """Put ``listed`` into the target's object pool (``pool``: the sha256s it holds)."""
    if listed.sha256 and listed.sha256 in pool:  # the store vouches for the bytes: no read
        return Saved(_entry(listed, listed.sha256, listed.size), copied=False)
    try:
        info, chunks = store.open_object(listed.key)
    except ObjectNotFoundError:
        raise SourceGone(listed.key) from None
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES) as spool:
        try:
            sha256, size = digest(chunks, spool)
        except ObjectNotFoundError:
            raise SourceGone(listed.key) from None
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        if info.sha256 and info.sha256 != sha256:
            raise BackupError(
                f"{listed.key}: the store records sha256 {info.sha256}, its bytes hash to "
                f"{sha256}: the stored object is damaged"
            )
        if sha256 in pool:
            return Saved(_entry(info, sha256, size), copied=False)
        spool.seek(0)
        key = object_key(sha256)
        target.put(key, spool, content_type="application/octet-stream")  # type: ignore[arg-type]
    check_pool_object(target, sha256, size)
    pool.add(sha256)
    return Saved(_entry(info, sha256, size), copied=True)


def _entry(info: ObjectInfo, sha256: str, size: int) -> ObjectEntry:
    content_type = info.content_type or "application/octet-stream"
    return ObjectEntry(key=info.key, size=size, sha256=sha256, content_type=content_type)


def check_pool_object(target: BackupTarget, sha256: str, size: int) -> None:
    """Read the target's copy of these bytes back; :class:`BackupError` if missing or wrong."""
    key = object_key(sha256)
    got = read_digest(target, key)
    if got != (sha256, size):
        raise BackupError(
            f"{key} is corrupt in the backup target: {got[1]} bytes hashing to {got[0]}, "
            f"expected {size} bytes"
        )


def restore_object(target: BackupTarget, entry: ObjectEntry, store: Storage) -> None:
    """Write ``entry`` back into the store from the pool, checked on the way and read back."""
    key = object_key(entry.sha256)
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES) as spool:
        try:
            _, chunks = target.open(key)
            got = digest(chunks, spool)
        except ObjectNotFoundError:
            raise BackupError(f"{entry.key}: {key} is missing from the backup") from None
        if got != (entry.sha256, entry.size):
            raise BackupError(f"{entry.key}: {key} is corrupt in the backup (sha256 {got[0]})")
        spool.seek(0)
        store.put(entry.key, spool, content_type=entry.content_type)  # type: ignore[arg-type]
    _, chunks = store.open_object(entry.key)
    if digest(chunks, None) != (entry.sha256, entry.size):
        raise BackupError(f"{entry.key} read back wrong from the store after restoring it")
