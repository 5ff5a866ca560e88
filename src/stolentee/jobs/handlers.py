"""Job handlers: what a worker does for each job kind.

``design``: run :func:`stolentee.pipeline.process_design` for the design in the payload and
record the outcome on the design. Bad input (the original is not a usable image, the design was
deleted) fails at once; anything else is retried by the queue.
"""

from __future__ import annotations

import logging
from typing import Any

from stolentee.db.models import Job
from stolentee.designs import DesignNotFoundError, DesignStore
from stolentee.errors import FileTooLargeError, ImageError, InvalidOptionError
from stolentee.jobs.worker import Handler, Heartbeat, PermanentJobError
from stolentee.pipeline import design_options, process_design
from stolentee.removal.base import Remover
from stolentee.removal.remote import ProviderRejectedError
from stolentee.storage.base import Storage

log = logging.getLogger(__name__)

DESIGN_JOB = "design"

# Errors that retrying cannot fix: the client sent something unusable. (Not every ClientError:
# a busy or rate-limited provider is temporary.)
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    ImageError,
    InvalidOptionError,
    FileTooLargeError,
    ProviderRejectedError,  # a remote provider refused the input: the next attempt would too
)


def design_handler(*, designs: DesignStore, storage: Storage, remover: Remover) -> Handler:
    def handle(job: Job, heartbeat: Heartbeat) -> dict[str, Any]:
        design_id = str(job.payload.get("design_id", ""))
        try:
            record = designs.get(design_id)
        except DesignNotFoundError:
            raise PermanentJobError(f"design {design_id!r} no longer exists") from None
        premium = bool(job.payload.get("premium", False))
        options = design_options(record.kind, record.output_format, premium=premium)
        outcome = process_design(
            storage=storage, remover=remover, original_key=record.original_key, options=options
        )
        heartbeat.check()  # the lease was lost meanwhile: another worker owns the job now
        result = outcome.as_dict()
        if not designs.record_result(design_id, cutout_key=outcome.cutout_key, result=result):
            log.info("design %s was deleted while processing", design_id)
            if not designs.cutout_in_use(outcome.cutout_key):
                storage.delete(outcome.cutout_key)
        return result

    return handle
