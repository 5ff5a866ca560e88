"""``/v1/designs``: upload a design, follow its background removal, fetch or delete it.

``POST`` validates the upload with the removal API's limits, stores the original under
``uploads/``, records the design, queues its job and answers ``202``; the page polls ``GET``
until the status is ``done`` (cutout URL under ``/assets/`` or the CDN domain) or ``failed``.
With callbacks enabled, a ``callback_url`` (checked by the callback URL policy) receives a signed
POST instead when the design finishes (:mod:`stolentee.designs.callbacks`).
"""

from __future__ import annotations

import functools
import logging
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Header, Query, Request, UploadFile
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from stolentee.api import openapi
from stolentee.api.deps import ServicesDep
from stolentee.api.model_choice import check_model, premium_model
from stolentee.api.routes.removebg import read_upload
from stolentee.api.routes.uploads import InvalidUploadKeyError, check_upload_key
from stolentee.api.security import authenticate
from stolentee.db.models import Job
from stolentee.designs import deletion, jobs
from stolentee.designs.pipeline import design_options
from stolentee.designs.store import (
    DESIGN_JOB,
    IDEMPOTENCY_KEY_PATTERN,
    DesignRecord,
    check_idempotency_key,
    new_design_id,
)
from stolentee.designs.views import design_body
from stolentee.errors import (
    ClientError,
    FileTooLargeError,
    InvalidImageError,
    ObjectNotFoundError,
)
from stolentee.removal.imaging.decode import check_image

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/designs", tags=["designs"])

_EXTENSIONS = {
    "JPEG": "jpg",
    "PNG": "png",
    "WEBP": "webp",
    "GIF": "gif",
    "BMP": "bmp",
    "TIFF": "tif",
}
_CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}
_ERROR: dict[str, Any] = {"description": 'JSON error: `{"errors": [{"title", "code", "detail"}]}`'}


class InvalidSourceError(ClientError):
    code = "invalid_design_source"
    title = "Invalid design source"


def _read_direct_upload(services: ServicesDep, upload_key: str, owner_label: str) -> bytes:
    """The bytes of the caller's own direct upload, within the upload size limit."""
    key = check_upload_key(upload_key, owner_label)
    try:
        info = services.runtime.storage.head(key)
    except ObjectNotFoundError as exc:
        raise InvalidUploadKeyError(
            "nothing was uploaded under upload_key (yet): POST the file to the presigned URL first"
        ) from exc
    limit = services.settings.api.max_body_bytes
    if info.size > limit:
        raise FileTooLargeError(f"the upload is {info.size} bytes; the limit is {limit}")
    if info.size == 0:
        raise InvalidImageError("the upload is empty (0 bytes)")
    return services.runtime.storage.get(key)


async def _jobs(services: ServicesDep, records: list[DesignRecord]) -> dict[str, Job]:
    """The design and callback jobs of ``records``, by id, in one query."""
    ids = [
        job_id
        for record in records
        for job_id in (record.job_id, record.callback_job_id)
        if job_id is not None
    ]
    if not ids:
        return {}
    jobs: dict[str, Job] = await run_in_threadpool(services.runtime.queue.get_many, ids)
    return jobs


async def _body(services: ServicesDep, record: DesignRecord) -> dict[str, Any]:
    """The design as GET shows it."""
    return _render(services, record, await _jobs(services, [record]))


def _render(services: ServicesDep, record: DesignRecord, jobs: dict[str, Job]) -> dict[str, Any]:
    design_job = jobs.get(record.job_id) if record.job_id is not None else None
    callback_job = jobs.get(record.callback_job_id) if record.callback_job_id else None
    return design_body(services.runtime.storage, record, design_job, callback_job)


def _delete_quietly(services: ServicesDep, key: str) -> None:
    """Remove an object written for a design that was not created (the request fails anyway:
    its own error is the one to report)."""
    try:
        services.runtime.storage.delete(key)
    except Exception:
        log.exception("could not remove %s after a failed design insert", key)


@router.post(
    "",
    status_code=202,
    responses={200: {"description": "Replayed (same Idempotency-Key)"}, 400: _ERROR, 403: _ERROR},
)
async def create_design(
    request: Request,
    services: ServicesDep,
    file: Annotated[
        UploadFile | None, File(description="The design image (or give upload_key).")
    ] = None,
    upload_key: Annotated[
        str | None,
        Form(
            description="Key of a direct upload made with POST /v1/uploads/presign.",
            json_schema_extra={"pattern": openapi.UPLOAD_KEY_PATTERN},
        ),
    ] = None,
    kind: Annotated[
        str,
        Form(
            alias="type",
            description="auto, graphic or photo (person, product...).",
            json_schema_extra={"enum": openapi.KIND_VALUES},
        ),
    ] = "auto",
    fmt: Annotated[
        str,
        Form(
            alias="format",
            description="png or webp.",
            json_schema_extra={"enum": openapi.DESIGN_FORMATS},
        ),
    ] = "png",
    callback_url: Annotated[
        str | None,
        Form(
            description="Where to POST a signed notice when the design is done or failed "
            "(only when the server enables callbacks; else 400 callbacks_disabled)."
        ),
    ] = None,
    model: Annotated[
        str | None,
        Form(description="Model or tier (fast, quality) for photos (default: the server's)."),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Retries with the same key get the first request's design back.",
            json_schema_extra={"pattern": f"^{IDEMPOTENCY_KEY_PATTERN}$"},
        ),
    ] = None,
) -> JSONResponse:
    principal = await authenticate(request, services.runtime.keys)
    checked_callback_url = None
    if callback_url:  # checked before any work; resolves the host, so in a thread
        checked_callback_url = await run_in_threadpool(
            services.runtime.callbacks.check_url, callback_url
        )
    key = check_idempotency_key(idempotency_key)
    options = design_options(kind, fmt)  # validates type and format before any work
    chosen = await run_in_threadpool(
        check_model, model, services.settings, whitespace_is_blank=False
    )
    if chosen is None and principal.premium:
        chosen = await run_in_threadpool(premium_model, services.settings)
    # A malformed request is refused even when its key was seen: a retry sends the same body.
    if (file is None) == (upload_key is None):
        raise InvalidSourceError("send exactly one of file (multipart upload) or upload_key")
    existing = await run_in_threadpool(
        services.runtime.designs.by_idempotency_key, principal.label, key
    )
    if existing is not None:
        body = await _body(services, existing)
        return JSONResponse(body, status_code=200, headers={"Idempotent-Replayed": "true"})

    # Below the free-space floor nothing new is stored: the room left is for deletes.
    await run_in_threadpool(services.runtime.disk.refuse_if_low)
    if file is not None:
        data = await read_upload(file, "file")
    else:
        assert upload_key is not None
        data = await run_in_threadpool(_read_direct_upload, services, upload_key, principal.label)
    # The whole image is checked now, as the removal API does: a truncated upload is a 400 here,
    # not a job that fails later.
    header = await run_in_threadpool(
        check_image, data, max_megapixels=services.settings.engine.max_input_megapixels
    )
    design_id = new_design_id()
    content_type = _CONTENT_TYPES.get(header.format, "application/octet-stream")
    if upload_key is not None:
        original_key = upload_key  # already in the bucket, checked: the design points at it
    else:
        original_key = f"uploads/{design_id}/original.{_EXTENSIONS.get(header.format, 'img')}"
        await run_in_threadpool(
            services.runtime.storage.put, original_key, data, content_type=content_type
        )
    queue = services.runtime.queue
    payload: dict[str, Any] = {"design_id": design_id, "premium": principal.premium}
    if chosen is not None:
        payload["model"] = chosen
    job = queue.new_job(DESIGN_JOB, payload)
    try:
        # The design and its job in one transaction: never a design without a job.
        record, created = await run_in_threadpool(
            lambda: services.runtime.designs.create(
                design_id=design_id,
                owner=principal.label,
                original_key=original_key,
                original_content_type=content_type,
                original_width=header.width,
                original_height=header.height,
                kind=options.kind.value,
                output_format=options.format.value,
                idempotency_key=key,
                callback_url=checked_callback_url,
                job=job,
            )
        )
    except Exception:
        # The insert failed, so the original stored above has no design: remove it. (Not on
        # cancellation: the insert may still commit in its thread.)
        if upload_key is None:
            await run_in_threadpool(_delete_quietly, services, original_key)
        raise
    if not created:  # a concurrent request with the same key won the race
        if upload_key is None:
            await run_in_threadpool(services.runtime.storage.delete, original_key)
        body = await _body(services, record)
        return JSONResponse(body, status_code=200, headers={"Idempotent-Replayed": "true"})
    await run_in_threadpool(queue.announce, [job])
    return JSONResponse(
        await _body(services, record),
        status_code=202,
        headers={"Location": f"/v1/designs/{design_id}"},
    )


@router.get("/{design_id}", responses={403: _ERROR, 404: _ERROR})
async def get_design(request: Request, services: ServicesDep, design_id: str) -> dict[str, Any]:
    principal = await authenticate(request, services.runtime.keys)
    record = await run_in_threadpool(services.runtime.designs.get, design_id, owner=principal.label)
    return await _body(services, record)


@router.get("", responses={400: _ERROR, 403: _ERROR})
async def list_designs(
    request: Request,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[
        str | None,
        Query(
            description="`next_cursor` of the previous page.",
            json_schema_extra={"pattern": openapi.CURSOR_PATTERN},
        ),
    ] = None,
) -> dict[str, Any]:
    principal = await authenticate(request, services.runtime.keys)
    records, next_cursor = await run_in_threadpool(
        lambda: services.runtime.designs.page(owner=principal.label, limit=limit, cursor=cursor)
    )
    jobs = await _jobs(services, records)
    items = [_render(services, record, jobs) for record in records]
    return {"data": items, "next_cursor": next_cursor}


@router.post(
    "/{design_id}/retry",
    status_code=202,
    responses={403: _ERROR, 404: _ERROR, 409: _ERROR},
    summary="Process a failed design again",
)
async def retry_design(request: Request, services: ServicesDep, design_id: str) -> JSONResponse:
    """Queue a ``failed`` design again (attempts start over; its callback, if any, is sent again
    when it finishes). 409 ``design_not_failed`` for a design that is queued, processing or
    done."""
    principal = await authenticate(request, services.runtime.keys)
    designs = services.runtime.designs
    record = await run_in_threadpool(designs.get, design_id, owner=principal.label)
    await run_in_threadpool(jobs.retry_design, services.runtime.queue, record)
    return JSONResponse(await _body(services, record), status_code=202)


@router.delete("/{design_id}", status_code=204, responses={403: _ERROR, 404: _ERROR})
async def delete_design(request: Request, services: ServicesDep, design_id: str) -> None:
    """Delete the design, its original, its cutout when no other design shares it, and (with
    ``STOLENTEE_CDN_PURGE_BACKEND``) the CDN's copies of them, through a queued purge."""
    principal = await authenticate(request, services.runtime.keys)
    runtime = services.runtime
    await run_in_threadpool(
        functools.partial(
            deletion.delete_design,
            design_id,
            owner=principal.label,
            designs=runtime.designs,
            storage=runtime.storage,
            queue=runtime.queue,
            purger=runtime.purger,
            disk=runtime.disk,
        )
    )
