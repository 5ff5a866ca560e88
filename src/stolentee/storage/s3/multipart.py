"""Uploads from a stream: spooled to learn their size and sha256, large ones sent in parts.

A failed multipart upload is aborted, so that no orphaned parts are billed.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from botocore.exceptions import BotoCoreError, ClientError

from stolentee.storage.base import iter_chunks

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)


@contextmanager
def spooled(
    data: bytes | BinaryIO, *, max_memory_bytes: int
) -> Iterator[tuple[IO[bytes], int, str]]:
    """``data`` as a seekable body with its size and sha256, spilling big streams to disk."""
    hasher = hashlib.sha256()
    with tempfile.SpooledTemporaryFile(max_size=max_memory_bytes) as spool:
        size = 0
        for chunk in iter_chunks(data):
            hasher.update(chunk)
            spool.write(chunk)
            size += len(chunk)
        spool.seek(0)
        yield spool, size, hasher.hexdigest()


def put_multipart(
    client: S3Client,
    *,
    bucket: str,
    key: str,
    body: IO[bytes],
    part_bytes: int,
    extra: dict[str, Any],
) -> str:
    """Upload ``body`` in parts of ``part_bytes``; the object's ETag."""
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"]
    try:
        parts = []
        number = 1
        while chunk := body.read(part_bytes):
            answer = client.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk
            )
            parts.append({"ETag": answer["ETag"], "PartNumber": number})
            number += 1
        completed = client.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
        )
        return str(completed.get("ETag", ""))
    except BaseException:
        try:
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except (BotoCoreError, ClientError):
            logger.warning("could not abort multipart upload %s of %r", upload_id, key)
        raise
