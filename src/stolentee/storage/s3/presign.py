"""Direct browser uploads: a presigned POST policy the bucket itself enforces."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from stolentee.storage.base import check_metadata, resolve_content_type, validate_key
from stolentee.storage.cache_policy import cache_policy_for

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@dataclass(frozen=True, slots=True)
class PresignedUpload:
    """A form a browser POSTs straight to the bucket: ``url`` plus the ``fields`` to send."""

    url: str
    fields: dict[str, str]
    key: str
    expires_at: datetime
    max_bytes: int
    content_type: str


def presign_post(
    client: S3Client,
    *,
    bucket: str,
    key: str,
    content_type: str,
    max_bytes: int,
    expires_s: int,
    metadata: dict[str, str] | None,
) -> PresignedUpload:
    """A POST policy letting a browser upload ``key`` directly, within the conditions.

    The bucket enforces the size range, the exact content type and the cache header; the form
    expires after ``expires_s``. The object has no sha256 metadata (the browser cannot compute it
    for us), so its first ``head`` hashes it.
    """
    validate_key(key)
    content_type = resolve_content_type(key, content_type)
    user_metadata = check_metadata(metadata)
    fields: dict[str, str] = {"Content-Type": content_type}
    conditions: list[Any] = [["content-length-range", 1, max_bytes], {"Content-Type": content_type}]
    policy = cache_policy_for(key)
    if policy is not None:
        fields["Cache-Control"] = policy.cache_control
        conditions.append({"Cache-Control": policy.cache_control})
    for name, value in user_metadata.items():
        fields[f"x-amz-meta-{name}"] = value
        conditions.append({f"x-amz-meta-{name}": value})
    answer = client.generate_presigned_post(
        Bucket=bucket, Key=key, Fields=fields, Conditions=conditions, ExpiresIn=expires_s
    )
    return PresignedUpload(
        url=answer["url"],
        fields={name: str(value) for name, value in answer["fields"].items()},
        key=key,
        expires_at=datetime.fromtimestamp(datetime.now(UTC).timestamp() + expires_s, tz=UTC),
        max_bytes=max_bytes,
        content_type=content_type,
    )
