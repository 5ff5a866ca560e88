"""A design as the API shows it: its status from its job's, its objects' public URLs, the
callback's state."""

from __future__ import annotations

from typing import Any

from stolentee.db.models import Job
from stolentee.designs.store import DesignRecord
from stolentee.storage.base import Storage, public_url_for

# ``callback.status``: the design has not finished yet, its notice is queued or being sent (or
# waits for a retry), it was accepted with a 2xx, or delivery gave up.
CALLBACK_WAITING = "waiting"


CALLBACK_PENDING = "pending"


CALLBACK_DELIVERED = "delivered"


CALLBACK_FAILED = "failed"


def design_status(record: DesignRecord, job: Job | None) -> str:
    """``done`` only with a cutout to show. The design is read before its job, so a job that
    finished in between is reported as still processing until the next poll."""
    if record.cutout_key is not None:
        return "done"
    if job is None:
        return "queued"
    state = str(job.state)
    return "processing" if state == "done" else state


def object_url(storage: Storage, record: DesignRecord, key: str) -> str:
    """Where a browser fetches one of the design's objects: under the design's own public base
    URL once a storage migration moved it (``stolentee.designs.urls``), else wherever the
    configured storage serves it."""
    if record.public_base_url:
        return public_url_for(key, public_domain=record.public_base_url, public_base_url="")
    return storage.public_url(key)


def callback_view(record: DesignRecord, callback_job: Job | None) -> dict[str, Any] | None:
    """The design's ``callback`` section: its URL and how delivery went, from the ``callback``
    job's row (attempts so far, the last failure, when it was accepted)."""
    if record.callback_url is None:
        return None
    status = CALLBACK_WAITING
    attempts = 0
    last_error = None
    delivered_at = None
    if callback_job is not None:
        state = str(callback_job.state)
        status = {"done": CALLBACK_DELIVERED, "failed": CALLBACK_FAILED}.get(
            state, CALLBACK_PENDING
        )
        attempts = callback_job.attempts
        last_error = callback_job.error
        if state == "done" and callback_job.finished_at is not None:
            delivered_at = callback_job.finished_at.isoformat()
    return {
        "url": record.callback_url,
        "status": status,
        "attempts": attempts,
        "last_error": last_error,
        "delivered_at": delivered_at,
    }


def design_body(
    storage: Storage, record: DesignRecord, job: Job | None, callback_job: Job | None = None
) -> dict[str, Any]:
    """The design as the API shows it; ``job`` is its design job, ``callback_job`` the job that
    delivers its callback (both ``None`` when there is none yet)."""
    result = record.result or {}
    cutout = None
    if record.cutout_key is not None:
        cutout = {
            "url": object_url(storage, record, record.cutout_key),
            "content_type": result.get("content_type"),
            "width": result.get("width"),
            "height": result.get("height"),
        }
    return {
        "id": record.id,
        "status": design_status(record, job),
        "type": record.kind,
        "format": record.output_format,
        "original": {
            "url": object_url(storage, record, record.original_key),
            "content_type": record.original_content_type,
            "width": record.original_width,
            "height": record.original_height,
        },
        "cutout": cutout,
        "kind": result.get("kind"),
        "method": result.get("method"),
        "provider": result.get("provider"),
        "foreground": result.get("foreground"),
        "timings_ms": result.get("timings_ms"),
        "attempts": job.attempts if job is not None else 0,
        "error": job.error if job is not None and str(job.state) == "failed" else None,
        "callback": callback_view(record, callback_job),
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
        "links": {"self": f"/v1/designs/{record.id}"},
    }
