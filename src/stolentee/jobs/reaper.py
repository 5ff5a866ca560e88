"""Recovery: what the reaper does for jobs whose worker or message went missing.

A worker that dies mid-job leaves a ``processing`` row whose lease expires: :meth:`Reaper.reap`
queues it again (counted as ``lost``, an attempt used) or fails it when its attempts are used up.
A message the transport lost (an emptied Redis, a send that failed) leaves a ``queued`` row no
worker will hear of: the reaper sends it again, two ways:

* :meth:`Reaper.resend_missing`, every ``STOLENTEE_JOB_RESEND_CHECK_S``: when the transport holds
  fewer messages (waiting and delayed) than there are queued jobs, some are missing; that many of
  the queued jobs sent longest ago (and more than :data:`RESEND_GRACE_S` ago, so a job whose
  message is being sent right now is left alone) are sent again. This is what brings work back
  within seconds after Redis restarts empty;
* a worker's own runs the database forgot (:meth:`Reaper.forgotten_runs`): handed back by that
  worker within a few heartbeats instead of after the lease;
* :meth:`Reaper.reap`, every ``STOLENTEE_JOB_REAPER_INTERVAL_S``: any queued job not leased
  ``resend_after_s`` after its last message, whatever the counts say (duplicate messages can
  hide a missing one from the count).

A duplicate message is harmless (leasing is one conditional UPDATE), so both only trade a few
extra messages for recovery time. Every worker process runs a reaper; they race harmlessly, as
each re-send is claimed by a conditional UPDATE of ``sent_at`` first.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from stolentee.db.models import Job
from stolentee.errors import DatabaseUnavailableError
from stolentee.jobs.figures import ReapReport
from stolentee.jobs.queue import JobQueue
from stolentee.jobs.states import FAILED, PROCESSING, QUEUED

log = logging.getLogger(__name__)

REAP_BATCH = 200  # jobs reclaimed or re-sent per pass and kind of work
# A queued job whose message went out less than this long ago is not presumed lost by the count
# check: its row may be committed while its message is still on the way.
RESEND_GRACE_S = 2.0


class Reaper:
    """Reclaims expired leases and re-sends lost messages for one :class:`JobQueue`."""

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue

    def reap(self) -> ReapReport:
        """Reclaim expired leases and re-send lost messages. Safe to run anywhere, any time."""
        requeued, failed = self._reclaim_expired()
        resent = self._resend_lost()
        report = ReapReport(requeued=requeued, failed=failed, resent=resent)
        if report:
            log.info(
                "reaper: %d job(s) re-queued, %d failed after lost workers, %d message(s) re-sent",
                requeued,
                failed,
                resent,
            )
        return report

    def _reclaim_expired(self) -> tuple[int, int]:
        now = self.queue.now()
        with self.queue.database.session() as session:
            expired = list(
                session.execute(
                    select(
                        Job.id, Job.kind, Job.attempts, Job.max_attempts, Job.lost, Job.lease_owner
                    )
                    .where(Job.state == PROCESSING, Job.lease_expires_at < now)
                    .order_by(Job.lease_expires_at)
                    .limit(REAP_BATCH)
                )
            )
        requeued = failed = 0
        for job_id, kind, attempts, max_attempts, lost, owner in expired:
            # Same row, same run, still expired: otherwise someone else got there first.
            same = and_(
                Job.state == PROCESSING,
                Job.lease_expires_at < now,
                Job.attempts == attempts,
                Job.lease_owner == owner,
            )
            lost += 1
            delay_s = self.queue.backoff(kind, attempts)
            available_at = now + timedelta(seconds=delay_s)
            values: dict[str, Any]
            if attempts < max_attempts:
                values = {
                    "state": QUEUED,
                    "lost": lost,
                    "error": f"worker lost (lease expired; owner {owner})",
                    "available_at": available_at,
                    "sent_at": available_at,
                    "lease_owner": None,
                    "lease_expires_at": None,
                }
            else:
                times = "once" if lost == 1 else f"{lost} times"
                values = {
                    "state": FAILED,
                    "lost": lost,
                    "error": f"worker lost {times} (lease expired; last owner {owner}); "
                    f"gave up after {attempts} attempts",
                    "finished_at": now,
                    "lease_expires_at": None,
                }
            try:  # one job the reaper cannot settle must not keep it from settling the others
                with self.queue.database.session() as session:
                    job = self.queue.update_one(session, job_id, same, values)
                    follow = self.queue.finalised(session, job)  # for a job now failed for good
            except DatabaseUnavailableError:
                raise  # nothing else would go better now: the pass ends, the next one retries
            except Exception:
                log.exception(
                    "reaper: job %s could not be reclaimed; the next pass retries", job_id
                )
                continue
            self.queue.send_all(follow)
            if job is None:
                continue
            if job.state == QUEUED:
                requeued += 1
                self.queue.send(job_id, delay_s)
            else:
                failed += 1
        return requeued, failed

    def _resend_lost(self) -> int:
        now = self.queue.now()
        return self._resend(now - timedelta(seconds=self.queue.resend_after_s), limit=REAP_BATCH)

    def _resend(self, stale: datetime, *, limit: int, oldest_sent_first: bool = False) -> int:
        """Send again up to ``limit`` queued, due jobs whose last message went out before
        ``stale`` (or never went out), each claimed first by moving its ``sent_at`` to now."""
        queue = self.queue
        now = queue.now()
        unleased = and_(
            Job.state == QUEUED,
            Job.available_at <= now,
            or_(Job.sent_at.is_(None), Job.sent_at <= stale),
        )
        order = (
            (Job.sent_at.is_not(None), Job.sent_at) if oldest_sent_first else (Job.available_at,)
        )
        with queue.database.session() as session:
            ids = list(
                session.scalars(select(Job.id).where(unleased).order_by(*order).limit(limit))
            )
        if not ids:
            return 0
        with queue.database.session() as session:
            claimed = list(
                session.scalars(
                    update(Job)
                    .where(Job.id.in_(ids), unleased)
                    .values(sent_at=now)
                    .returning(Job.id)
                    .execution_options(synchronize_session=False)
                )
            )
        return sum(1 for job_id in claimed if queue.send(job_id))

    def resend_if_early(self, job_id: str) -> bool:
        """For a message that arrived before its job is due (clocks of two machines disagree):
        send it again, delayed until the job's ``available_at``. ``True`` if re-sent."""
        job = self.queue.get(job_id)
        if job is None or job.state != QUEUED:
            return False
        wait_s = (job.available_at - self.queue.now()).total_seconds()
        return wait_s > 0 and self.queue.send(job_id, wait_s)

    def forgotten_runs(self, owner_prefix: str, stale_s: float) -> list[tuple[str, str]]:
        """``(job_id, owner)`` of the jobs processing under an owner starting with
        ``owner_prefix`` (one worker process's threads) whose heartbeat is older than
        ``stale_s``. The worker hands back those it is not running: runs the database forgot it
        had finished (a crash took the last asynchronous commits, see
        ``STOLENTEE_DB_WORKER_SYNCHRONOUS_COMMIT``), or leases it took without hearing so; they
        would otherwise wait for their lease to expire."""
        queue = self.queue
        stale = queue.now() - timedelta(seconds=stale_s)
        pick = (
            select(Job.id, Job.lease_owner)
            .where(
                Job.state == PROCESSING,
                Job.lease_owner.startswith(owner_prefix, autoescape=True),
                Job.heartbeat_at < stale,
            )
            .limit(REAP_BATCH)
        )
        with queue.database.session() as session:
            return [(str(job_id), str(owner)) for job_id, owner in session.execute(pick)]

    def resend_missing(self) -> int:
        """Re-send as many queued jobs as the transport is short of messages (see the module
        docstring); returns how many were sent. Cheap when nothing is missing: two counts."""
        queue = self.queue
        try:
            messages = queue.transport.pending() + queue.transport.scheduled()
        except Exception as exc:  # noqa: BLE001 - transport down: nothing can be re-sent now
            log.debug("cannot count queue messages: %s", exc)
            return 0
        with queue.database.session() as session:
            queued = int(session.scalar(select(func.count()).where(Job.state == QUEUED)) or 0)
        missing = min(queued - messages, REAP_BATCH)
        if missing <= 0:
            return 0
        now = queue.now()
        resent = self._resend(
            now - timedelta(seconds=RESEND_GRACE_S), limit=missing, oldest_sent_first=True
        )
        if resent:
            log.info("reaper: %d queued job(s) had no message; sent again", resent)
        return resent
