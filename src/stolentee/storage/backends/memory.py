"""In-memory storage for tests: the same contract as the disk backend, nothing persisted.

It also refuses the keys the local backend cannot hold side by side (``a`` next to ``a/b``), so
code tested against it works on disk too.
"""

from __future__ import annotations

import bisect
import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import BinaryIO

from stolentee.errors import ObjectNotFoundError, StorageConflictError
from stolentee.storage.base import (
    CHUNK_BYTES,
    DEFAULT_LIST_LIMIT,
    ListPage,
    ObjectInfo,
    PagedStorage,
    check_metadata,
    iter_chunks,
    resolve_content_type,
    resolve_range,
    validate_key,
    validate_prefix,
)


@dataclass(frozen=True, slots=True)
class _Stored:
    data: bytes
    info: ObjectInfo


def _sort_key(key: str) -> bytes:
    return key.encode("utf-8")


def _parents(key: str) -> Iterator[str]:
    """``a``, ``a/b`` for key ``a/b/c``: the directories a file system would need."""
    parts = key.split("/")
    for depth in range(1, len(parts)):
        yield "/".join(parts[:depth])


class MemoryStorage(PagedStorage):
    """Objects in a dict, guarded by a lock; keys kept sorted by their UTF-8 bytes."""

    name = "memory"

    def __init__(self, *, public_domain: str = "", public_base_url: str = "") -> None:
        self.public_domain = public_domain
        self.public_base_url = public_base_url
        self._lock = threading.RLock()
        self._objects: dict[str, _Stored] = {}
        self._sorted: list[bytes] = []  # UTF-8 encoded keys, sorted
        self._directories: dict[str, int] = {}  # implied directory -> number of keys below it

    def __repr__(self) -> str:
        return f"MemoryStorage({len(self._objects)} objects)"

    def put(
        self,
        key: str,
        data: bytes | BinaryIO,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        """Store a copy of ``data`` (read from a stream chunk by chunk) under ``key``."""
        validate_key(key)
        content_type = resolve_content_type(key, content_type)
        user_metadata = check_metadata(metadata)
        hasher = hashlib.sha256()
        chunks: list[bytes] = []
        for chunk in iter_chunks(data):
            hasher.update(chunk)
            chunks.append(chunk)
        body = b"".join(chunks)
        info = ObjectInfo(
            key=key,
            size=len(body),
            content_type=content_type,
            sha256=hasher.hexdigest(),
            last_modified=datetime.now(UTC),
            metadata=user_metadata,
        )
        with self._lock:
            self._check_no_conflict(key)
            if key not in self._objects:
                bisect.insort(self._sorted, _sort_key(key))
                for parent in _parents(key):
                    self._directories[parent] = self._directories.get(parent, 0) + 1
            self._objects[key] = _Stored(data=body, info=info)
        return self._copy(info)

    def get(self, key: str) -> bytes:
        """The whole object."""
        return self._stored(key).data

    def open_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes ``start``..``end`` inclusive, in chunks; errors are raised before iterating."""
        data = self._stored(key).data
        first, last = resolve_range(len(data), start, end)
        return self._chunks(data, first, last)

    def head(self, key: str) -> ObjectInfo:
        """The object's information."""
        return self._copy(self._stored(key).info)

    def exists(self, key: str) -> bool:
        """Whether ``key`` is stored."""
        validate_key(key)
        with self._lock:
            return key in self._objects

    def delete(self, key: str) -> bool:
        """Remove ``key``; ``False`` when it was not stored."""
        validate_key(key)
        with self._lock:
            if self._objects.pop(key, None) is None:
                return False
            index = bisect.bisect_left(self._sorted, _sort_key(key))
            del self._sorted[index]
            for parent in _parents(key):
                remaining = self._directories[parent] - 1
                if remaining:
                    self._directories[parent] = remaining
                else:
                    del self._directories[parent]
        return True

    def check(self) -> None:
        """Always ready: the objects are in this process."""

    def list(
        self,
        prefix: str = "",
        *,
        start_after: str | None = None,
        limit: int = DEFAULT_LIST_LIMIT,
    ) -> ListPage:
        """Objects whose key starts with ``prefix``, in UTF-8 byte order, after ``start_after``."""
        validate_prefix(prefix)
        if limit < 1:
            raise ValueError("limit must be at least 1")
        encoded_prefix = prefix.encode("utf-8")
        with self._lock:
            index = bisect.bisect_left(self._sorted, encoded_prefix)
            if start_after:
                after = start_after.encode("utf-8", "surrogateescape")
                index = max(index, bisect.bisect_right(self._sorted, after))
            keys = [
                encoded.decode("utf-8")
                for encoded in self._sorted[index : index + limit + 1]
                if encoded.startswith(encoded_prefix)
            ]
            objects = [self._copy(self._objects[key].info) for key in keys[:limit]]
        more = len(keys) > limit
        return ListPage(objects=objects, next_start_after=objects[-1].key if more else None)

    # --- helpers -----------------------------------------------------------------------------

    def _stored(self, key: str) -> _Stored:
        validate_key(key)
        with self._lock:
            stored = self._objects.get(key)
        if stored is None:
            raise ObjectNotFoundError(f"no object under key {key!r}")
        return stored

    def _check_no_conflict(self, key: str) -> None:
        """Refuse what a file system cannot hold: ``a`` beside ``a/b``."""
        if key in self._directories:
            raise StorageConflictError(f"{key!r} is a prefix of other keys (a directory on disk)")
        for parent in _parents(key):
            if parent in self._objects:
                raise StorageConflictError(f"{key!r} cannot be stored below the object {parent!r}")

    @staticmethod
    def _chunks(data: bytes, first: int, last: int) -> Iterator[bytes]:
        view = memoryview(data)
        for offset in range(first, last + 1, CHUNK_BYTES):
            yield bytes(view[offset : min(offset + CHUNK_BYTES, last + 1)])

    @staticmethod
    def _copy(info: ObjectInfo) -> ObjectInfo:
        """A copy whose metadata dict the caller may change without touching the store."""
        return replace(info, metadata=dict(info.metadata))
