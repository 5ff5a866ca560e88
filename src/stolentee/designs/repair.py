"""Designs whose row disagrees with their job, put right by every worker's reaper.

A design and its job are created in one transaction now, and a design's result is recorded in
the transaction that marks its job done, so neither disagreement below arises from this
release. Rows from before (three commits per upload: design, job, attach), or written by a
previous release still running during a rolling deploy, can be left:

* **no job** (``job_id`` NULL, or naming a job that does not exist) and no cutout: the design
  shows ``queued`` forever and nothing would ever run it. It gets a new ``design`` job, created
  and attached in one transaction (only if it still has none), and its message is sent;
* **a done job and no cutout**: the job's result names the cutout, but the design never
  recorded it (it shows ``processing`` forever). The result is copied onto the design.

Rows younger than :data:`REPAIR_AFTER_S` are left alone: an upload of a previous release may be
between its commits. Each pass looks at most :data:`REPAIR_BATCH` designs of each kind.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update

from stolentee.db.models import Design, Job
from stolentee.designs.store import DESIGN_JOB
from stolentee.jobs.queue import JobQueue
from stolentee.jobs.states import DONE

log = logging.getLogger(__name__)

REPAIR_AFTER_S = 60.0
REPAIR_BATCH = 100


@dataclass(frozen=True, slots=True)
class RepairReport:
    jobs_created: int = 0  # designs that had no job and got one
    results_recorded: int = 0  # designs whose done job's result was copied onto them

    def __bool__(self) -> bool:
        return bool(self.jobs_created or self.results_recorded)


def repair_designs(queue: JobQueue) -> RepairReport:
    """One pass over both kinds of disagreement (see the module docstring)."""
    report = RepairReport(
        jobs_created=_give_jobs(queue), results_recorded=_record_done_results(queue)
    )
    if report:
        log.warning(
            "repaired designs: %d without a job got one, %d got the result of their done job",
            report.jobs_created,
            report.results_recorded,
        )
    return report


def _give_jobs(queue: JobQueue) -> int:
    cutoff = queue.now() - timedelta(seconds=REPAIR_AFTER_S)
    no_job = (
        select(Design.id, Design.job_id)
        .outerjoin(Job, Job.id == Design.job_id)
        .where(Design.cutout_key.is_(None), Design.created_at < cutoff, Job.id.is_(None))
        .order_by(Design.created_at)
        .limit(REPAIR_BATCH)
    )
    with queue.database.session() as session:
        orphans = list(session.execute(no_job))
    created = []
    for design_id, dangling in orphans:
        # The premium flag of the original upload is not known any more: the standard chain.
        job = queue.new_job(DESIGN_JOB, {"design_id": design_id, "premium": False})
        still_without = Design.job_id.is_(None) if dangling is None else Design.job_id == dangling
        with queue.database.session() as session:
            attached = session.execute(
                update(Design)
                .where(Design.id == design_id, Design.cutout_key.is_(None), still_without)
                .values(job_id=job.id, updated_at=queue.now())
                .returning(Design.id)
                .execution_options(synchronize_session=False)
            ).first()
            if attached is None:
                continue  # another reaper got there first, or the design was deleted
            session.add(job)  # in the same transaction as the design's new job_id
        created.append(job)
    queue.announce(created)
    return len(created)


def _record_done_results(queue: JobQueue) -> int:
    cutoff = queue.now() - timedelta(seconds=REPAIR_AFTER_S)
    done_unrecorded = (
        select(Design.id, Job.result)
        .join(Job, Job.id == Design.job_id)
        .where(Design.cutout_key.is_(None), Job.state == DONE, Job.finished_at < cutoff)
        .limit(REPAIR_BATCH)
    )
    with queue.database.session() as session:
        rows = list(session.execute(done_unrecorded))
    recorded = 0
    for design_id, result in rows:
        cutout_key = (result or {}).get("cutout_key")
        if not isinstance(cutout_key, str) or not cutout_key:
            continue  # nothing to record: left for an operator (`jobs retry` cannot help)
        with queue.database.session() as session:
            changed = session.execute(
                update(Design)
                .where(Design.id == design_id, Design.cutout_key.is_(None))
                .values(cutout_key=cutout_key, result=result, updated_at=queue.now())
                .returning(Design.id)
                .execution_options(synchronize_session=False)
            ).first()
        recorded += changed is not None
    return recorded
