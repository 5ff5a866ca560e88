"""Retrying failed jobs by hand: ``POST /v1/designs/{id}/retry`` and ``stolentee jobs retry``.

A ``failed`` job is queued again as new: attempts and stalls back to zero, due now, its last
error kept until the next run ends. One conditional UPDATE (``state = 'failed'``) decides, so a
job retried twice at once is queued once; the job kind's retry hook (``JobQueue.on_retry``, e.g.
a design's callback made due again) runs in the same transaction, and the messages are sent once
it committed (a message that cannot be sent now is left to the reaper, the row being the outbox).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, select, update

from stolentee.db.models import Job
from stolentee.jobs.queue import JobQueue
from stolentee.jobs.states import FAILED, QUEUED

RETRY_BATCH = 500  # jobs per transaction


@dataclass(frozen=True, slots=True)
class RetryFilter:
    """Which failed jobs to retry: by id, kind, and finished at or after ``since``."""

    job_ids: Sequence[str] | None = None
    kind: str | None = None
    since: datetime | None = None

    def where(self) -> ColumnElement[bool]:
        clause: ColumnElement[bool] = Job.state == FAILED
        if self.job_ids is not None:
            clause = clause & Job.id.in_(list(self.job_ids))
        if self.kind is not None:
            clause = clause & (Job.kind == self.kind)
        if self.since is not None:
            clause = clause & (Job.finished_at >= self.since)
        return clause


def failed_jobs(queue: JobQueue, which: RetryFilter, *, limit: int | None = None) -> list[Job]:
    """The failed jobs ``which`` selects, oldest failure first (what a dry run shows)."""
    stmt = select(Job).where(which.where()).order_by(Job.finished_at, Job.id)
    if limit is not None:
        stmt = stmt.limit(limit)
    with queue.database.session() as session:
        return list(session.scalars(stmt))


def retry_failed(queue: JobQueue, which: RetryFilter, *, limit: int | None = None) -> list[str]:
    """Queue the selected failed jobs again (see the module docstring); their ids, in order."""
    retried: list[str] = []
    while limit is None or len(retried) < limit:
        batch = RETRY_BATCH if limit is None else min(RETRY_BATCH, limit - len(retried))
        ids = _retry_batch(queue, which, batch)
        retried.extend(ids)
        for job_id in ids:
            if not queue.send(job_id):
                queue.mark_unsent(job_id)
        if len(ids) < batch:
            break
    return retried


def _retry_batch(queue: JobQueue, which: RetryFilter, size: int) -> list[str]:
    now = queue.now()
    pick = select(Job.id).where(which.where()).order_by(Job.finished_at, Job.id).limit(size)
    with queue.database.session() as session:
        rows = session.execute(
            update(Job)
            .where(Job.id.in_(pick.scalar_subquery()), Job.state == FAILED)
            .values(
                state=QUEUED,
                attempts=0,
                stalls=0,
                stalled_since=None,
                available_at=now,
                sent_at=now,
                finished_at=None,
                lease_owner=None,
                lease_expires_at=None,
            )
            .returning(Job.id, Job.kind)
            .execution_options(synchronize_session=False)
        ).all()
        by_kind: dict[str, list[str]] = {}
        for job_id, kind in rows:
            by_kind.setdefault(str(kind), []).append(str(job_id))
        for kind, ids in by_kind.items():
            hook = queue.on_retry.get(kind)
            if hook is not None:
                hook(session, ids)
    return [str(job_id) for job_id, _ in rows]
