"""HTTP rules of the file routes as pure functions: ranges, conditional requests, headers.

Everything here follows RFC 9110 (sections 8.8 validators, 13 conditional requests, 14 range
requests) and takes plain values, so it is tested without an app.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from stolentee.errors import RangeNotSatisfiableError
from stolentee.storage.base import ObjectInfo
from stolentee.storage.cache_policy import CachePolicy

# Stored objects are user content: never let a browser run or sniff them in our origin.
CONTENT_SECURITY_POLICY = "default-src 'none'; sandbox"
VARY = "Accept-Encoding"

_RANGE_SPEC = re.compile(r"([0-9]*)-([0-9]*)")
_ENTITY_TAG = re.compile(r'\s*(W/)?"([\x21\x23-\x7e\x80-\xff]*)"\s*(?:,|$)')


@dataclass(frozen=True, slots=True)
class ByteRange:
    """An inclusive byte range ``start``..``end`` of a representation of ``size`` bytes."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    @property
    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end}/{self.size}"


def unsatisfiable_content_range(size: int) -> str:
    """``Content-Range`` of a 416 response."""
    return f"bytes */{size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single byte range a ``Range`` header asks for, or ``None`` to send everything.

    Supported: ``bytes=a-b``, ``bytes=a-`` and ``bytes=-n``. Headers that are malformed, use
    another unit or ask for several ranges are ignored (``None``), as RFC 9110 allows. A range
    that cannot be satisfied raises ``RangeNotSatisfiableError`` (answer 416).
    """
    if header is None:
        return None
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None
    match = _RANGE_SPEC.fullmatch(spec.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        return _suffix_range(int(last), size)
    start = int(first)
    if last and int(last) < start:
        return None  # an invalid range-spec: ignore the header
    if start >= size:
        raise RangeNotSatisfiableError(f"range starts at {start}, beyond {size} bytes")
    end = min(int(last), size - 1) if last else size - 1
    return ByteRange(start=start, end=end, size=size)


def _suffix_range(length: int, size: int) -> ByteRange:
    """The last ``length`` bytes (``bytes=-length``)."""
    if length == 0 or size == 0:
        raise RangeNotSatisfiableError(f"the last {length} bytes of {size} cannot be sent")
    return ByteRange(start=max(size - length, 0), end=size - 1, size=size)


def parse_entity_tags(header: str) -> list[tuple[bool, str]] | None:
    """``(weak, opaque_tag)`` of each entity tag in a list header; ``None`` if malformed."""
    tags: list[tuple[bool, str]] = []
    position = 0
    header = header.strip()
    while position < len(header):
        match = _ENTITY_TAG.match(header, position)
        if match is None:
            return None
        tags.append((match.group(1) is not None, match.group(2)))
        position = match.end()
    return tags


def _opaque(etag: str) -> str:
    """The opaque part of one of our (strong, quoted) ETags."""
    return etag.removeprefix("W/").strip('"')


def if_none_match_matches(header: str, etag: str) -> bool:
    """Whether ``If-None-Match`` matches ``etag`` (weak comparison; ``*`` matches any object)."""
    if header.strip() == "*":
        return True
    tags = parse_entity_tags(header) or []
    current = _opaque(etag)
    return any(tag == current for _weak, tag in tags)


def parse_http_date(value: str) -> datetime | None:
    """An HTTP-date (IMF-fixdate, RFC 850 or asctime) as aware UTC, ``None`` if invalid."""
    try:
        parsed = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def http_date(moment: datetime) -> str:
    """``moment`` as an IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``)."""
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def _whole_seconds(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(microsecond=0)


def is_not_modified(headers: Mapping[str, str], info: ObjectInfo) -> bool:
    """Whether a GET/HEAD with these request headers is answered 304 Not Modified.

    ``If-None-Match`` decides when present; only without it is ``If-Modified-Since`` looked at.
    """
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        return if_none_match_matches(if_none_match, info.etag)
    if_modified_since = headers.get("if-modified-since")
    if if_modified_since is None:
        return False
    since = parse_http_date(if_modified_since)
    return since is not None and _whole_seconds(info.last_modified) <= since


def if_range_allows(header: str | None, info: ObjectInfo) -> bool:
    """Whether the ``Range`` header may be honoured given ``If-Range`` (absent: yes).

    An entity tag must match strongly (weak tags never do); a date must equal Last-Modified.
    """
    if header is None:
        return True
    header = header.strip()
    if header.startswith(('"', "W/")):
        tags = parse_entity_tags(header)
        return tags == [(False, _opaque(info.etag))]
    since = parse_http_date(header)
    return since is not None and since == _whole_seconds(info.last_modified)


def _downloads_only(content_type: str) -> bool:
    """Content a browser must only download: anything but images, and SVG (it can run script)."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    return not media_type.startswith("image/") or media_type == "image/svg+xml"


def validator_headers(info: ObjectInfo, policy: CachePolicy) -> dict[str, str]:
    """Headers of a 304 response: validators and caching rules, nothing about the body."""
    return {
        "ETag": info.etag,
        "Last-Modified": http_date(info.last_modified),
        "Cache-Control": policy.cache_control,
        "CDN-Cache-Control": policy.cdn_cache_control,
        "Vary": VARY,
    }


def object_headers(info: ObjectInfo, policy: CachePolicy) -> dict[str, str]:
    """Headers of a 200 response for the whole object (and the base of a 206 or 416)."""
    headers = validator_headers(info, policy)
    headers.update(
        {
            "Content-Type": info.content_type,
            "Content-Length": str(info.size),
            "Accept-Ranges": "bytes",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        }
    )
    if _downloads_only(info.content_type):
        headers["Content-Disposition"] = "attachment"
    return headers


def partial_headers(info: ObjectInfo, policy: CachePolicy, byte_range: ByteRange) -> dict[str, str]:
    """Headers of a 206 response carrying ``byte_range``."""
    headers = object_headers(info, policy)
    headers["Content-Length"] = str(byte_range.length)
    headers["Content-Range"] = byte_range.content_range
    return headers
