"""An S3 object's metadata as the storage contract describes it: our sha256 in user metadata, ETags
unquoted, times in UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from stolentee.storage.base import (
    ObjectInfo,
    resolve_content_type,
)
from stolentee.storage.s3.answers import ObjectHeaders

if TYPE_CHECKING:
    pass


SHA256_METADATA = "stolentee-sha256"


RESERVED_METADATA_PREFIX = "stolentee-"


def headers_of_boto(answer: Any) -> ObjectHeaders:
    """The same view of a boto3 ``get_object``/``head_object`` answer as of wire headers."""
    size = int(answer["ContentLength"])
    first, length = 0, size
    content_range = answer.get("ContentRange")
    if content_range:
        size = int(content_range.rsplit("/", 1)[1])
        first = int(content_range.split(" ", 1)[1].split("-", 1)[0])
    return ObjectHeaders(
        size=size,
        content_type=answer.get("ContentType") or "",
        last_modified=_utc(answer["LastModified"]),
        metadata={name.lower(): value for name, value in answer.get("Metadata", {}).items()},
        etag=answer.get("ETag", ""),
        cache_control=answer.get("CacheControl"),
        range_first=first,
        range_length=length,
    )


def object_info(key: str, headers: ObjectHeaders) -> ObjectInfo:
    """An ``ObjectInfo`` from a HEAD's or GET's headers (sha256 ``""`` if not ours)."""
    metadata = dict(headers.metadata)
    sha256 = metadata.pop(SHA256_METADATA, "")
    metadata = {k: v for k, v in metadata.items() if not k.startswith(RESERVED_METADATA_PREFIX)}
    return ObjectInfo(
        key=key,
        size=headers.size,
        content_type=headers.content_type or resolve_content_type(key, None),
        sha256=sha256 if len(sha256) == 64 else "",
        last_modified=headers.last_modified,
        metadata=metadata,
        store_etag=unquoted_etag(headers.etag),
    )


def unquoted_etag(etag: str) -> str:
    """An ETag without its quotes (listings and headers do not always agree on them)."""
    return etag.strip().removeprefix("W/").strip('"')


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
