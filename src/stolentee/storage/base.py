"""The storage contract shared by every backend (local disk, in-memory, S3-compatible).

Keys are ``/``-separated relative paths such as ``uploads/2026/11/ab12.png`` or
``assets/cutouts/<sha256>.png``; :func:`validate_key` is the single gate every backend applies.
Each stored object carries its size, content type, sha256 and free-form string metadata.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO, Protocol, runtime_checkable
from urllib.parse import quote

from stolentee.errors import InvalidKeyError, RangeNotSatisfiableError

MAX_KEY_BYTES = 1024  # S3's limit on a key, in UTF-8 bytes
MAX_SEGMENT_BYTES = 255  # the usual file-name limit of local file systems
DEFAULT_CONTENT_TYPE = "application/octet-stream"
DEFAULT_LIST_LIMIT = 1000
CHUNK_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a backend knows about one stored object."""

    key: str
    size: int
    content_type: str
    sha256: str
    last_modified: datetime
    metadata: dict[str, str] = field(default_factory=dict)
    # The storage service's own entity tag ("" where the backend has none): it changes whenever
    # the object is rewritten, so it tells "unchanged since" cheaply; never a content hash.
    store_etag: str = ""

    @property
    def etag(self) -> str:
        """Strong HTTP entity tag: the content hash, quoted."""
        return f'"{self.sha256}"'


@dataclass(frozen=True, slots=True)
class ListPage:
    """One page of a listing; pass ``next_start_after`` back to get the next page."""

    objects: list[ObjectInfo]
    next_start_after: str | None


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """A key and its size, as a bare listing gives them (no content type, no sha256)."""

    key: str
    size: int
    store_etag: str = ""  # as ObjectInfo.store_etag, when the listing gives it


@runtime_checkable
class Storage(Protocol):
    """Contract of every storage backend. All methods validate ``key`` first."""

    name: str

    def put(
        self,
        key: str,
        data: bytes | BinaryIO,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        """Store ``data`` under ``key`` atomically, replacing any previous object."""
        ...

    def get(self, key: str) -> bytes:
        """The whole object. Raises ``ObjectNotFoundError``."""
        ...

    def open_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Stream bytes ``start`` to ``end`` inclusive (``None``: to the end) in chunks."""
        ...

    def head(self, key: str) -> ObjectInfo:
        """The object's information without its bytes. Raises ``ObjectNotFoundError``."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> bool:
        """Remove the object; ``True`` when something was removed. Missing keys are no error."""
        ...

    def list(
        self,
        prefix: str = "",
        *,
        start_after: str | None = None,
        limit: int = DEFAULT_LIST_LIMIT,
    ) -> ListPage:
        """Objects whose key starts with ``prefix``, in key order, after ``start_after``."""
        ...

    def iterate(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object under ``prefix``, in key order, paging internally."""
        ...

    def iterate_keys(self, prefix: str = "") -> Iterator[KeyEntry]:
        """Every key under ``prefix`` with its size: the cheapest listing a backend has."""
        ...

    def open_object(self, key: str) -> tuple[ObjectInfo, Iterator[bytes]]:
        """The object's information and its bytes from one read (one GET on S3).

        ``sha256`` is ``""`` when the backend cannot know it before reading (an S3 object
        written by another tool); the caller hashes the bytes. Close the iterator when not
        consuming it all.
        """
        ...

    def public_url(self, key: str) -> str:
        """Where a browser fetches the object (CDN domain or this service's file routes)."""
        ...

    def check(self) -> None:
        """Raise a ``StorageError`` unless the store can serve now (readiness, health)."""
        ...

    def close(self) -> None:
        """Release connections and threads; the storage is not used afterwards."""
        ...


@runtime_checkable
class ServerSideCopy(Protocol):
    """A backend that can copy an object from another store of the same service without the
    bytes passing through this process (S3 ``CopyObject`` between buckets of one endpoint)."""

    def copy_object_from(self, source: Storage, key: str) -> bool:
        """Copy ``key`` from ``source`` with its content type and metadata; ``False`` when this
        pair of stores cannot (another service, other credentials): copy it by streaming."""
        ...


class PagedStorage:
    """What every backend shares once it has ``list``: paging in ``iterate`` and public URLs.

    Subclasses set ``public_domain`` and ``public_base_url`` and implement ``list``.
    """

    public_domain: str
    public_base_url: str

    def list(
        self,
        prefix: str = "",
        *,
        start_after: str | None = None,
        limit: int = DEFAULT_LIST_LIMIT,
    ) -> ListPage:
        raise NotImplementedError

    def head(self, key: str) -> ObjectInfo:
        raise NotImplementedError

    def open_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        raise NotImplementedError

    def iterate_keys(self, prefix: str = "") -> Iterator[KeyEntry]:
        """Keys and sizes from the full listing (backends with a cheaper one override this)."""
        for info in self.iterate(prefix):
            yield KeyEntry(key=info.key, size=info.size, store_etag=info.store_etag)

    def open_object(self, key: str) -> tuple[ObjectInfo, Iterator[bytes]]:
        """``head`` then ``open_range`` (backends that can do both at once override this)."""
        info = self.head(key)
        return info, self.open_range(key)

    def iterate(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object under ``prefix``, page by page."""
        start_after: str | None = None
        while True:
            page = self.list(prefix, start_after=start_after)
            yield from page.objects
            if page.next_start_after is None:
                return
            start_after = page.next_start_after

    def close(self) -> None:
        """Nothing to release unless a backend says otherwise."""

    def public_url(self, key: str) -> str:
        """CDN URL when a public domain is configured, else this service's file route."""
        return public_url_for(
            key, public_domain=self.public_domain, public_base_url=self.public_base_url
        )


_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f]")


# What validate_key accepts, as a JSON Schema pattern for the OpenAPI document (the file
# routes): segments of non-control characters without '/' or '\', never '.' or '..'. Lengths are
# bounded in characters there (a schema cannot count UTF-8 bytes): 63 per segment and 256 in all
# keep within the byte limits whatever the characters.
_SEGMENT_PATTERN = (
    r"(?:[^\x00-\x1f\x7f\\/.][^\x00-\x1f\x7f\\/]{0,62}"
    r"|\.[^\x00-\x1f\x7f\\/.][^\x00-\x1f\x7f\\/]{0,61}"
    r"|\.\.[^\x00-\x1f\x7f\\/]{1,61})"
)
KEY_PATTERN = rf"^{_SEGMENT_PATTERN}(?:/{_SEGMENT_PATTERN})*$"
KEY_SCHEMA_MAX_LENGTH = 256


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative object key, else raise ``InvalidKeyError``.

    Rejected: empty keys, absolute paths, ``.``/``..`` or empty segments, backslashes, NUL and
    other control characters, keys over 1024 UTF-8 bytes and segments over 255 bytes.
    """
    if not isinstance(key, str) or not key:
        raise InvalidKeyError("storage key must be a non-empty string")
    if _CONTROL_CHARACTER.search(key):
        raise InvalidKeyError("storage key must not contain NUL or control characters")
    if "\\" in key:
        raise InvalidKeyError("storage key must not contain backslashes")
    if key.startswith("/"):
        raise InvalidKeyError("storage key must be relative (no leading '/')")
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidKeyError("storage key must be valid UTF-8 text") from exc
    if len(encoded) > MAX_KEY_BYTES:
        raise InvalidKeyError(f"storage key is longer than {MAX_KEY_BYTES} bytes")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidKeyError("storage key must not contain empty, '.' or '..' segments")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise InvalidKeyError(f"storage key segment is longer than {MAX_SEGMENT_BYTES} bytes")
    return key


def validate_prefix(prefix: str) -> str:
    """A listing prefix: empty, or a prefix of keys that :func:`validate_key` accepts."""
    if prefix == "":
        return prefix
    # Some valid key starts with the prefix iff the prefix plus one more character is valid
    # ("a/." may list "a/.hidden"; "../" and "a//" can list nothing valid).
    validate_key(prefix + "x")
    return prefix


def guess_content_type(key: str) -> str:
    """The content type the key's extension suggests, ``application/octet-stream`` if none."""
    guessed, _ = mimetypes.guess_type(key, strict=False)
    return guessed or DEFAULT_CONTENT_TYPE


def resolve_content_type(key: str, content_type: str | None) -> str:
    """The content type to store: ``content_type`` when given (checked), else guessed from ``key``.

    A content type ends up verbatim in HTTP headers, so it must be printable ASCII (no CR/LF).
    """
    if content_type is None or not content_type.strip():
        return guess_content_type(key)
    content_type = content_type.strip()
    if len(content_type) > 255 or not all(0x20 <= ord(c) < 0x7F for c in content_type):
        raise InvalidKeyError("content type must be at most 255 printable ASCII characters")
    return content_type


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def iter_chunks(
    data: bytes | bytearray | memoryview | BinaryIO, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[bytes]:
    """The bytes of ``data`` in chunks of at most ``chunk_bytes``, reading a stream as it goes."""
    if isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data).cast("B")
        for offset in range(0, len(view), chunk_bytes):
            yield bytes(view[offset : offset + chunk_bytes])
        return
    while True:
        chunk = data.read(chunk_bytes)
        if not chunk:
            return
        yield bytes(chunk)


def resolve_range(size: int, start: int, end: int | None) -> tuple[int, int]:
    """Check the inclusive byte range ``start``..``end`` of an object of ``size`` bytes.

    ``end=None`` means the last byte. Returns ``(start, end)``; for the whole of an empty object
    (``start=0, end=None, size=0``) that is ``(0, -1)``, an empty range. Anything else outside
    ``0 <= start <= end < size`` raises ``RangeNotSatisfiableError``.
    """
    last = size - 1 if end is None else end
    if size == 0 and start == 0 and end is None:
        return 0, -1
    if start < 0 or last < start or last >= size:
        raise RangeNotSatisfiableError(
            f"byte range {start}-{'' if end is None else end} is outside an object of {size} bytes"
        )
    return start, last


def public_url_for(key: str, *, public_domain: str, public_base_url: str) -> str:
    """The public URL of ``key``, shared by every backend.

    ``{public_domain}/{key}`` when a CDN domain is configured (already normalised to
    ``https://assets.example.com``), else this service's file routes under ``public_base_url``
    (root-relative ``/uploads/...`` when that is empty). The key is percent-quoted, ``/`` kept.
    """
    base = public_domain or public_base_url
    return f"{base.rstrip('/')}/{quote(validate_key(key), safe='/')}"


def check_metadata(metadata: dict[str, str] | None) -> dict[str, str]:
    """Metadata keys are lower-case ASCII tokens, values printable ASCII (what S3 can carry)."""
    if not metadata:
        return {}
    checked: dict[str, str] = {}
    total = 0
    for name, value in metadata.items():
        if not name or not all(c.isascii() and (c.isalnum() or c in "-_") for c in name):
            raise InvalidKeyError(f"metadata name {name!r} must be ASCII letters, digits, - or _")
        if not isinstance(value, str) or not all(0x20 <= ord(c) < 0x7F for c in value):
            raise InvalidKeyError(f"metadata value of {name!r} must be printable ASCII")
        total += len(name) + len(value)
        checked[name.lower()] = value
    if total > 2048:
        raise InvalidKeyError("metadata must total at most 2 KB (S3's limit)")
    return checked
