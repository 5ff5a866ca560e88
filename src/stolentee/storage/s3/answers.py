"""What S3 answers mean: an object's headers (size, type, ETag, our sha256, cache header), and a
ListObjectsV2 page."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus
from xml.etree import ElementTree

if TYPE_CHECKING:
    pass

_METADATA_PREFIX = "x-amz-meta-"


@dataclass(frozen=True, slots=True)
class ObjectHeaders:
    """What the headers of a GET or HEAD answer say about an object."""

    size: int  # the whole object's size (from Content-Range on a ranged GET)
    content_type: str
    last_modified: datetime
    metadata: dict[str, str]  # x-amz-meta-* without the prefix, names in lower case
    etag: str
    cache_control: str | None
    range_first: int = 0
    range_length: int = 0  # bytes in this answer's body (GET)


@dataclass(frozen=True, slots=True)
class ListedObject:
    key: str
    size: int
    etag: str  # as listed, quotes removed


@dataclass(frozen=True, slots=True)
class ListedPage:
    """One page of ``ListObjectsV2``."""

    objects: list[ListedObject]
    next_token: str | None  # pass back for the next page; None on the last one


def parse_listing(data: bytes) -> ListedPage:
    """A ``ListObjectsV2`` answer asked with ``encoding-type=url`` (keys percent-encoded, so
    any key survives XML)."""
    root = ElementTree.fromstring(data)  # noqa: S314 - the configured storage service answers
    objects: list[ListedObject] = []
    truncated, token = False, None
    for child in root:
        name = child.tag.rpartition("}")[2]
        if name == "Contents":
            fields = {part.tag.rpartition("}")[2]: part.text or "" for part in child}
            objects.append(
                ListedObject(
                    key=unquote_plus(fields.get("Key", "")),  # form encoding: " " is "+"
                    size=int(fields.get("Size") or 0),
                    etag=fields.get("ETag", "").strip().strip('"'),
                )
            )
        elif name == "IsTruncated":
            truncated = (child.text or "").strip().lower() == "true"
        elif name == "NextContinuationToken":
            token = child.text or None
    return ListedPage(objects=objects, next_token=token if truncated else None)


def object_headers(headers: Mapping[str, str]) -> ObjectHeaders:
    """Parse the headers of a successful GET or HEAD."""
    lower = {name.lower(): value for name, value in headers.items()}
    length = int(lower.get("content-length", "0") or 0)
    size, first = length, 0
    content_range = lower.get("content-range", "")
    if content_range.startswith("bytes "):
        span, _, total = content_range[6:].partition("/")
        if total.isdigit():
            size = int(total)
        first_text, _, _ = span.partition("-")
        if first_text.isdigit():
            first = int(first_text)
    modified = lower.get("last-modified")
    try:
        last_modified = parsedate_to_datetime(modified) if modified else datetime.now(UTC)
    except (TypeError, ValueError):
        last_modified = datetime.now(UTC)
    if last_modified.tzinfo is None:
        last_modified = last_modified.replace(tzinfo=UTC)
    return ObjectHeaders(
        size=size,
        content_type=lower.get("content-type", ""),
        last_modified=last_modified,
        metadata={
            name[len(_METADATA_PREFIX) :]: value
            for name, value in lower.items()
            if name.startswith(_METADATA_PREFIX)
        },
        etag=lower.get("etag", ""),
        cache_control=lower.get("cache-control"),
        range_first=first,
        range_length=length,
    )
