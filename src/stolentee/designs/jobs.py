"""Job handlers: what a worker does for each job kind, and the queue they run on.

``design``: run :func:`stolentee.designs.pipeline.process_design` for the design in the payload
(read in the lease's own transaction by :func:`load_design`) and record the outcome on the design in
the transaction that marks the job done: a design shows a cutout only once its job is done, and
a run that lost its lease writes nothing. That UPDATE also says whether a callback is due (a URL
and no callback job yet); when none is, the callback follow-up hook is skipped. Bad input (the
original is not a usable image, the design was deleted) fails at once; anything else is retried
by the queue. Two transactions per job: take it, finish it.

``callback``: deliver a finished design's signed notice (:mod:`stolentee.designs.callbacks`);
queued by the ``design`` jobs' follow-up hook in the transaction that finishes them.

``cdn_purge``: make the CDN forget URLs (:mod:`stolentee.cdn.jobs`), queued when a design is
deleted or a storage migration moves URLs.

:func:`build_handlers` and :func:`queue_hooks` are what every process (API server with its
in-process worker, ``stolentee worker``) uses, through :func:`stolentee.runtime.build_queue`, so
all agree on hooks, backoffs and handlers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, update
from sqlalchemy.orm import Session

from stolentee.cdn.jobs import CDN_PURGE_JOB, RETRY_BACKOFF_S, Observe, purge_handler
from stolentee.cdn.purge import Purger
from stolentee.db.models import Design, Job
from stolentee.designs.callbacks import (
    CALLBACK_JOB,
    CallbackRejectedError,
    CallbackSender,
    callback_handler,
    design_follow_up,
)
from stolentee.designs.pipeline import design_options, process_design
from stolentee.designs.store import (
    DESIGN_JOB,
    DesignNotFoundError,
    DesignRecord,
    DesignStore,
    design_in,
    record_result_in,
)
from stolentee.errors import ConflictError, FileTooLargeError, ImageError, InvalidOptionError
from stolentee.jobs.heartbeat import Heartbeat
from stolentee.jobs.queue import JobQueue
from stolentee.jobs.retry import RetryFilter, retry_failed
from stolentee.jobs.runs import Completion, Handler, PermanentJobError
from stolentee.jobs.states import FAILED
from stolentee.removal.base import Remover
from stolentee.removal.providers.errors import ProviderRejectedError
from stolentee.storage.base import Storage

log = logging.getLogger(__name__)


# Errors that retrying cannot fix: the client sent something unusable. (Not every ClientError:
# a busy or rate-limited provider is temporary.)
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    ImageError,
    InvalidOptionError,
    FileTooLargeError,
    ProviderRejectedError,  # a remote provider refused the input: the next attempt would too
    CallbackRejectedError,  # the receiver or the URL policy refused a callback for good
)


def design_handler(*, designs: DesignStore, storage: Storage, remover: Remover) -> Handler:
    def handle(job: Job, heartbeat: Heartbeat) -> Completion:
        design_id = str(job.payload.get("design_id", ""))
        record = heartbeat.context  # read with the lease (load_design), in its transaction
        if not isinstance(record, DesignRecord) or record.id != design_id:
            try:
                record = designs.get(design_id)
            except DesignNotFoundError:
                raise PermanentJobError(f"design {design_id!r} no longer exists") from None
        premium = bool(job.payload.get("premium", False))
        options = design_options(record.kind, record.output_format, premium=premium)
        model = job.payload.get("model")  # chosen at upload (a name or a tier), else the default
        if isinstance(model, str) and model:
            options = replace(options, model=model)
        outcome = process_design(
            storage=storage, remover=remover, original_key=record.original_key, options=options
        )
        heartbeat.check()  # the lease was lost meanwhile: another worker owns the job now
        result = outcome.as_dict()
        deleted = False

        def within(conn: Connection, done: Job) -> bool:
            """Runs with the job's completion: record the outcome on the design."""
            nonlocal deleted
            recorded = record_result_in(
                conn, design_id, cutout_key=outcome.cutout_key, result=result
            )
            deleted = recorded is None
            # The callback hook can only queue a notice for a design that has a callback URL
            # and no callback job yet (the URL is set at upload and never changes).
            return recorded is not None and recorded.callback_due

        def after(completed: bool) -> None:
            if completed and deleted:
                log.info("design %s was deleted while processing", design_id)
                if not designs.cutout_in_use(outcome.cutout_key):
                    storage.delete(outcome.cutout_key)

        return Completion(result=result, within=within, after=after)

    return handle


def load_design(conn: Connection, job: Job) -> DesignRecord | None:
    """The ``design`` jobs' lease hook: read the design with the lease, in its transaction."""
    return design_in(conn, str(job.payload.get("design_id", "")))


class DesignNotFailedError(ConflictError):
    code = "design_not_failed"
    title = "Design not failed"


def announce_again(session: Session, job_ids: list[str]) -> None:
    """The design jobs' retry hook: a retried design is announced again when it finishes (its
    callback claim is cleared; the earlier callback job's row stays as the record of it)."""
    session.execute(
        update(Design)
        .where(Design.job_id.in_(job_ids), Design.callback_job_id.is_not(None))
        .values(callback_job_id=None)
        .execution_options(synchronize_session=False)
    )


def retry_design(queue: JobQueue, record: DesignRecord) -> None:
    """Queue a failed design's job again (``POST /v1/designs/{id}/retry``); a design that has
    not failed is a :class:`DesignNotFailedError` (409)."""
    job = queue.get(record.job_id) if record.job_id is not None else None
    if record.cutout_key is not None or job is None or job.state != FAILED:
        state = "done" if record.cutout_key is not None else (job.state if job else "queued")
        raise DesignNotFailedError(f"design {record.id} is {state}; only a failed one is retried")
    if not retry_failed(queue, RetryFilter(job_ids=[job.id])):
        raise DesignNotFailedError(f"design {record.id} was retried by another request")


def queue_hooks(callbacks: CallbackSender) -> dict[str, Any]:
    """The design jobs' lease hook (read the design), follow-up (queue the callback) and retry
    hook (announce again), and the callback jobs' own retry backoff: keyword arguments of
    :class:`stolentee.jobs.JobQueue`."""
    return {
        "follow_ups": {DESIGN_JOB: design_follow_up(callbacks)},
        "on_lease": {DESIGN_JOB: load_design},
        "on_retry": {DESIGN_JOB: announce_again},
        "retry_backoff_s": {
            CALLBACK_JOB: callbacks.retry_backoff_s,
            CDN_PURGE_JOB: RETRY_BACKOFF_S,
        },
    }


def build_handlers(
    *,
    designs: DesignStore,
    storage: Storage,
    remover: Remover,
    queue: JobQueue,
    callbacks: CallbackSender,
    purger: Purger,
    observe_purge: Observe | None = None,
) -> Mapping[str, Handler]:
    """Every job kind's handler."""
    return {
        DESIGN_JOB: design_handler(designs=designs, storage=storage, remover=remover),
        CALLBACK_JOB: callback_handler(
            designs=designs, storage=storage, queue=queue, sender=callbacks
        ),
        CDN_PURGE_JOB: purge_handler(purger, observe=observe_purge),
    }
