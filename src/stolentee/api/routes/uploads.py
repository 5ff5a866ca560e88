"""``POST /v1/uploads/presign``: let a browser upload a design straight to the S3 bucket.

The answer is an S3 POST policy (``url`` + form ``fields``) that the bucket itself enforces: the
exact key, the declared image content type, a size between 1 byte and
``STOLENTEE_PRESIGN_MAX_UPLOAD_MB``, the uploads' CDN ``Cache-Control``, and an expiry. The key
lives under ``uploads/direct/<owner>/``, where ``<owner>`` is derived from the caller's API key,
so a design can later be created from it (``POST /v1/designs`` with ``upload_key``) only by the
same caller. Needs an S3-compatible backend; on the local backend the answer is 409
``presign_unsupported`` (a client error, so that clients fall back to a multipart upload).
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from starlette.concurrency import run_in_threadpool

from stolentee.api.deps import ServicesDep
from stolentee.api.security import authenticate
from stolentee.errors import ClientError, ConflictError, InvalidOptionError
from stolentee.storage.s3.store import S3Storage

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])

DIRECT_PREFIX = "uploads/direct/"
MIB = 1024 * 1024
UPLOAD_CONTENT_TYPES = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "image/gif": "gif",
    "image/bmp": "bmp",
    "image/tiff": "tif",
}
_ERROR: dict[int | str, dict[str, Any]] = {
    code: {"description": 'JSON error: `{"errors": [{"title", "code", "detail"}]}`'}
    for code in (400, 403, 409, 502, 503)
}


class PresignUnsupportedError(ConflictError):
    """The configured storage cannot hand out direct-upload URLs."""

    status_code = 409
    code = "presign_unsupported"
    title = "Direct uploads are not available"


class InvalidUploadKeyError(ClientError):
    code = "invalid_upload_key"
    title = "Invalid upload key"


def owner_prefix(owner_label: str) -> str:
    """``uploads/direct/<16 hex>/``: the caller's own folder for direct uploads."""
    return f"{DIRECT_PREFIX}{hashlib.sha256(owner_label.encode()).hexdigest()[:16]}/"


def check_upload_key(key: str, owner_label: str) -> str:
    """``key`` if it is a direct upload of this caller, else ``InvalidUploadKeyError``."""
    prefix = owner_prefix(owner_label)
    name = key[len(prefix) :] if key.startswith(prefix) else ""
    stem, _, extension = name.partition(".")
    if len(stem) != 32 or not stem.isalnum() or extension not in UPLOAD_CONTENT_TYPES.values():
        raise InvalidUploadKeyError("upload_key is not a direct upload made with this API key")
    return key


@router.post("/presign", responses=_ERROR)
async def presign_upload(
    request: Request,
    services: ServicesDep,
    content_type: Annotated[
        str, Body(embed=True, description="The image's type: image/png, image/jpeg, ...")
    ],
) -> dict[str, Any]:
    """A form the browser POSTs to the bucket (``multipart/form-data``: ``fields``, then
    ``file``), then ``POST /v1/designs`` with ``upload_key`` to process it."""
    principal = await authenticate(request, services.runtime.keys)
    storage = services.runtime.storage
    if not isinstance(storage, S3Storage):
        raise PresignUnsupportedError(
            "direct uploads need an S3-compatible storage backend (STORAGE_BACKEND=r2 or s3); "
            "upload the file to POST /v1/designs instead"
        )
    normalized = content_type.strip().lower()
    extension = UPLOAD_CONTENT_TYPES.get(normalized)
    if extension is None:
        raise InvalidOptionError(
            f"content_type must be one of {', '.join(sorted(UPLOAD_CONTENT_TYPES))}"
        )
    settings = services.settings.storage
    key = f"{owner_prefix(principal.label)}{uuid.uuid4().hex}.{extension}"
    form = await run_in_threadpool(
        lambda: storage.presign_upload(
            key,
            content_type=normalized,
            max_bytes=settings.presign_max_upload_mb * MIB,
            expires_s=settings.presign_expiry_s,
        )
    )
    return {
        "upload": {"url": form.url, "method": "POST", "fields": form.fields},
        "key": form.key,
        "content_type": form.content_type,
        "max_bytes": form.max_bytes,
        "expires_at": form.expires_at.isoformat(),
        "public_url": storage.public_url(form.key),
    }
