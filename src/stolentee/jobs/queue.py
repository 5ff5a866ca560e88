"""The job queue: the ``jobs`` table is the source of truth, huey only carries job ids.

Every state change is one conditional UPDATE whose WHERE clause states what must still be true,
so racing workers and reapers cannot both win; the life of a job, lost messages and workers,
follow-up jobs and the two transactions per job are described in ``docs/queue.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    false,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from stolentee.config import QueueSettings
from stolentee.db.engine import Database
from stolentee.db.models import JOB_KIND_LENGTH, JOB_OWNER_LENGTH, Job
from stolentee.jobs.figures import QueueFigures, read_figures
from stolentee.jobs.statements import COMPLETE, JOB_BY_ID, LEASE, job_from_row
from stolentee.jobs.states import (
    DONE,
    FAILED,
    PROCESSING,
    QUEUED,
    backoff_s,
    new_job_id,
    truncate_error,
    utc_now,
)
from stolentee.jobs.transport import Transport

log = logging.getLogger(__name__)

FollowUp = Callable[["JobQueue", Session, Job], Sequence[Job]]
"""``(queue, session, job) -> new jobs``: called in the transaction that made ``job`` final (its
``state`` is ``done`` or ``failed``); returns the jobs it added to ``session`` (built with
:meth:`JobQueue.new_job`), whose messages the queue sends once that transaction committed. An
exception rolls the final state back with it, so hooks do database work only."""

LeaseHook = Callable[[Connection, Job], object]
"""``(connection, job) -> context``: called in the transaction that leased ``job`` (after the
UPDATE that made it this run's; ``connection`` is in that transaction), to read what its handler
needs (a design's row) without a transaction of its own; the worker hands the value to the
handler (:attr:`Heartbeat.context`). Reads only: an exception rolls the lease back with it."""

RetryHook = Callable[[Session, list[str]], object]
"""``(session, job_ids)``: called in the transaction that queued failed jobs of its kind again
(:mod:`stolentee.jobs.retry`), for what must be undone with them (a design's delivered
callback, so the next outcome is announced too). Database work only."""

Within = Callable[[Connection, Job], bool]
"""``(connection, job) -> follow up?``: work committed together with a job's completion (see
:meth:`JobQueue.complete`), called right after the UPDATE that made ``job`` done in this run's
name (``connection`` is in that transaction); ``job`` carries what that UPDATE wrote (``id``,
``kind``, ``state``, ``result``, ``error``, ``finished_at``, ``lease_owner``,
``lease_expires_at``), not the row's other columns (the follow-up hook gets the full row).
Returns ``False`` when the job kind's follow-up hook would do nothing for this job (the caller
knows, from a row it just wrote, that there is nothing to follow up), which saves the hook's
statements; ``True`` runs the hook as usual."""


@dataclass(frozen=True, slots=True)
class Leased:
    """A job just leased, and what the kind's lease hook read with it (``None`` without one)."""

    job: Job
    context: object = None


class JobQueue:
    """Enqueue, lease, heartbeat, complete, fail, release and reap jobs. Thread-safe."""

    def __init__(
        self,
        *,
        database: Database,
        transport: Transport,
        settings: QueueSettings,
        clock: Callable[[], datetime] = utc_now,
        resend_after_s: float | None = None,
        follow_ups: Mapping[str, FollowUp] | None = None,
        retry_backoff_s: Mapping[str, float] | None = None,
        on_lease: Mapping[str, LeaseHook] | None = None,
        on_retry: Mapping[str, RetryHook] | None = None,
    ) -> None:
        self.database = database
        self.transport = transport
        self.settings = settings
        self.clock = clock
        # Per job kind: a hook run when such a job becomes final (see the module docstring).
        self.follow_ups: dict[str, FollowUp] = dict(follow_ups or {})
        # Per job kind: a read run in the lease's transaction (see LeaseHook).
        self.on_lease: dict[str, LeaseHook] = dict(on_lease or {})
        # Per job kind: work done with a manual retry of failed jobs (see RetryHook).
        self.on_retry: dict[str, RetryHook] = dict(on_retry or {})
        # Per job kind: the first retry delay, instead of settings.retry_backoff_s.
        self.retry_backoff_s: dict[str, float] = dict(retry_backoff_s or {})
        # A queued, available job not leased this long after its message was sent lost it.
        # Duplicates are harmless, so this only trades recovery time for a few extra messages.
        self.resend_after_s = settings.lease_s if resend_after_s is None else resend_after_s

    # --- helpers ------------------------------------------------------------------------------

    def now(self) -> datetime:
        now = self.clock()
        if now.tzinfo is None:
            raise ValueError("the queue clock must return aware datetimes (UTC)")
        return now

    def send(self, job_id: str, delay_s: float = 0) -> bool:
        """Send a message for the job; a transport failure is logged (``False``) and the
        reaper re-sends it later. Harmless to repeat."""
        try:
            self.transport.send(job_id, delay_s)
        except Exception as exc:  # noqa: BLE001 - transport down: the job is safe in the table
            log.warning("could not send job %s to the queue (%s); the reaper will", job_id, exc)
            return False
        return True

    def backoff(self, kind: str, attempts: int) -> float:
        return backoff_s(self.settings, attempts, first_s=self.retry_backoff_s.get(kind))

    def finalised(self, session: Session, job: Job | None) -> list[Job]:
        """Run the follow-up hook of a job that just became final, in its transaction."""
        if job is None or job.state not in (DONE, FAILED):
            return []
        hook = self.follow_ups.get(job.kind)
        return [] if hook is None else list(hook(self, session, job))

    def _finalised_on(self, conn: Connection, job: Job) -> list[Job]:
        """:meth:`_finalised` in a connection's transaction: the hook gets a session joined to
        it (its writes are flushed into that transaction, committed or rolled back with it)."""
        if job.state not in (DONE, FAILED) or job.kind not in self.follow_ups:
            return []
        session = Session(bind=conn, expire_on_commit=False)  # joins: never commits it
        try:
            follow = self.finalised(session, job)
            session.flush()
        finally:
            session.close()
        return follow

    def send_all(self, jobs: Iterable[Job]) -> None:
        for job in jobs:
            delay_s = max(0.0, (job.available_at - self.now()).total_seconds())
            if not self.send(job.id, delay_s):
                self.mark_unsent(job.id)

    def update_one(
        self, session: Session, job_id: str, where: ColumnElement[bool], values: dict[str, Any]
    ) -> Job | None:
        stmt = (
            update(Job)
            .where(Job.id == job_id, where)
            .values(**values)
            .returning(Job)
            .execution_options(synchronize_session=False)
        )
        return session.scalars(stmt).one_or_none()

    def _owned(self, owner: str) -> ColumnElement[bool]:
        return and_(Job.state == PROCESSING, Job.lease_owner == owner)

    # --- producing ----------------------------------------------------------------------------

    def enqueue(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        job_id: str | None = None,
        max_attempts: int | None = None,
        delay_s: float = 0,
    ) -> Job:
        """Store a new queued job (committed first), then send its message."""
        job = self.new_job(kind, payload, job_id=job_id, max_attempts=max_attempts, delay_s=delay_s)
        with self.database.session() as session:
            session.add(job)
        if not self.send(job.id, delay_s):
            self.mark_unsent(job.id)
        return job

    def new_job(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        job_id: str | None = None,
        max_attempts: int | None = None,
        delay_s: float = 0,
    ) -> Job:
        """A new queued job row, not yet stored: for :meth:`enqueue` and follow-up hooks, which
        add it to their session (the queue sends its message after their commit)."""
        if not kind or len(kind) > JOB_KIND_LENGTH:
            raise ValueError(f"job kind must be 1 to {JOB_KIND_LENGTH} characters")
        now = self.now()
        available_at = now + timedelta(seconds=max(0.0, delay_s))
        return Job(
            id=job_id or new_job_id(),
            kind=kind,
            payload=payload,
            state=QUEUED,
            attempts=0,
            max_attempts=max_attempts or self.settings.max_attempts,
            lost=0,
            stalls=0,
            available_at=available_at,
            sent_at=available_at,
            created_at=now,
        )

    def announce(self, jobs: Iterable[Job]) -> None:
        """Send the messages of ``jobs`` (rows from :meth:`new_job`) once the caller's own
        transaction has committed them. A message that cannot be sent now is left to the
        reaper, which re-sends queued jobs nobody leased: the committed row is the outbox."""
        self.send_all(jobs)

    def mark_unsent(self, job_id: str) -> None:
        """Let the next reap() pass re-send at once instead of after ``resend_after_s``."""
        try:
            with self.database.session() as session:
                session.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.state == QUEUED)
                    .values(sent_at=None)
                    .execution_options(synchronize_session=False)
                )
        except Exception:
            log.exception("could not mark job %s as unsent", job_id)

    # --- working ------------------------------------------------------------------------------

    def lease(self, job_id: str, owner: str) -> Job | None:
        """Take the job for ``owner`` if it is ready: queued and available, or processing under
        an expired lease (its worker is gone; that run counts as lost). One atomic UPDATE;
        ``None`` when another worker has it, it finished, or it is not due yet.
        """
        leased = self.lease_with_context(job_id, owner)
        return None if leased is None else leased.job

    def lease_with_context(self, job_id: str, owner: str) -> Leased | None:
        """:meth:`lease`, plus the job kind's lease hook run in the same transaction."""
        if not owner or len(owner) > JOB_OWNER_LENGTH:
            raise ValueError(f"lease owner must be 1 to {JOB_OWNER_LENGTH} characters")
        now = self.now()
        params = {
            "job_id": job_id,
            "owner": owner,
            "now": now,
            "expires": now + timedelta(seconds=self.settings.lease_s),
        }
        with self.database.engine.begin() as conn:
            row = LEASE.first(conn, params)
            if row is None:
                return None
            job = job_from_row(LEASE.columns, row)
            hook = self.on_lease.get(job.kind)
            return Leased(job, None if hook is None else hook(conn, job))

    def heartbeat_many(self, leases: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Extend several leases by ``lease_s`` in one UPDATE; ``leases`` are
        ``(job_id, owner)`` pairs. Returns the pairs still held (the others were lost)."""
        pairs = list(dict.fromkeys(leases))
        if not pairs:
            return set()
        now = self.now()
        held_by = or_(
            false(), *(and_(Job.id == job_id, Job.lease_owner == owner) for job_id, owner in pairs)
        )
        stmt = (
            update(Job)
            .where(Job.state == PROCESSING, held_by)
            .values(
                heartbeat_at=now, lease_expires_at=now + timedelta(seconds=self.settings.lease_s)
            )
            .returning(Job.id, Job.lease_owner)
            .execution_options(synchronize_session=False)
        )
        with self.database.session() as session:
            renewed = {(str(job_id), str(owner)) for job_id, owner in session.execute(stmt)}
        return renewed & set(pairs)

    def heartbeat(self, job_id: str, owner: str) -> bool:
        """Extend ``owner``'s lease by ``lease_s``; ``False`` when the lease was lost."""
        now = self.now()
        with self.database.session() as session:
            job = self.update_one(
                session,
                job_id,
                self._owned(owner),
                {
                    "heartbeat_at": now,
                    "lease_expires_at": now + timedelta(seconds=self.settings.lease_s),
                },
            )
        return job is not None

    def complete(
        self,
        job_id: str,
        owner: str,
        result: dict[str, Any] | None = None,
        *,
        within: Within | None = None,
    ) -> bool:
        """Mark the job done with ``result``; ``False`` (and nothing written) if the lease was
        lost, in which case another run owns the job now.

        ``within(connection, job)``, when given, runs in the same transaction right after the
        fenced UPDATE succeeded (never when the lease was lost): the job's own writes (a
        design's result) commit with ``done`` or not at all, in one transaction. An exception
        from it rolls everything back and propagates (the job is still this run's to fail).
        """
        now = self.now()
        params = {"job_id": job_id, "owner": owner, "now": now, "result": result}
        follow: list[Job] = []
        with self.database.engine.begin() as conn:
            row = COMPLETE.first(conn, params)
            if row is None:
                return False
            # What the UPDATE just wrote, and the kind it returned (see Within).
            job = job_from_row(
                ("id", "kind", "state", "result", "error", "finished_at", "lease_owner",
                 "lease_expires_at"),
                (job_id, row[0], DONE, result, None, now, owner, None),
            )  # fmt: skip
            if (within is None or within(conn, job)) and job.kind in self.follow_ups:
                full = JOB_BY_ID.first(conn, {"job_id": job_id})
                assert full is not None  # updated in this very transaction
                follow = self._finalised_on(conn, job_from_row(JOB_BY_ID.columns, full))
        self.send_all(follow)
        return True

    def fail(
        self,
        job_id: str,
        owner: str,
        error: str,
        *,
        retryable: bool = True,
        stalled: bool = False,
    ) -> Job | None:
        """Record a failed run. Retryable with attempts left: queued again after
        ``retry_backoff_s * 2**(attempts-1)`` seconds (and a delayed message); otherwise
        ``failed`` with ``error``. Returns the job as left, or ``None`` if the lease was lost.

        ``stalled``: storage or the database failed, not the job. Such a run is queued again
        without counting as an attempt (backoff doubling per stall, up to
        ``stall_backoff_max_s``) for ``stall_retry_s`` from the first stall, so an outage of a
        few minutes does not fail good work for good; past that it counts like any failure.
        """
        current = self.get(job_id)
        if current is None or current.state != PROCESSING or current.lease_owner != owner:
            return None
        now = self.now()
        error = truncate_error(error)
        same_run = and_(self._owned(owner), Job.attempts == current.attempts)
        since = current.stalled_since or now
        stall = stalled and (now - since).total_seconds() < self.settings.stall_retry_s
        retry = stall or (retryable and current.attempts < current.max_attempts)
        values: dict[str, Any]
        if stall:
            stalls = (current.stalls or 0) + 1
            delay_s = min(self.settings.stall_backoff_max_s, self.backoff(current.kind, stalls))
            values = {"attempts": Job.attempts - 1, "stalls": stalls, "stalled_since": since}
        elif retry:
            delay_s = self.backoff(current.kind, current.attempts)
            # A failure of the job itself ends a stall; a stall past its window keeps it open.
            values = {"stalled_since": since if stalled else None}
        if retry:
            available_at = now + timedelta(seconds=delay_s)
            values |= {
                "state": QUEUED,
                "error": error,
                "available_at": available_at,
                "sent_at": available_at,
                "lease_owner": None,
                "lease_expires_at": None,
            }
        else:
            if retryable or stalled:
                error = f"{error} (gave up after {current.attempts} attempts)"
            values = {
                "state": FAILED,
                "error": truncate_error(error),
                "finished_at": now,
                "lease_expires_at": None,
            }
        follow: list[Job] = []
        with self.database.session() as session:
            job = self.update_one(session, job_id, same_run, values)
            if not retry:
                follow = self.finalised(session, job)
        if job is not None and retry:
            self.send(job_id, delay_s)
        self.send_all(follow)
        return job

    def release(self, job_id: str, owner: str) -> bool:
        """Hand the job back unfinished (graceful stop): queued again at once, and the run
        does not count as an attempt. ``False`` if the lease was already lost."""
        now = self.now()
        with self.database.session() as session:
            job = self.update_one(
                session,
                job_id,
                self._owned(owner),
                {
                    "state": QUEUED,
                    "attempts": Job.attempts - 1,
                    "available_at": now,
                    "sent_at": now,
                    "lease_owner": None,
                    "lease_expires_at": None,
                },
            )
        if job is None:
            return False
        self.send(job_id)
        return True

    # --- reading ------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        with self.database.session() as session:
            return session.get(Job, job_id)

    def get_many(self, job_ids: Iterable[str]) -> dict[str, Job]:
        ids = list(job_ids)
        if not ids:
            return {}
        with self.database.session() as session:
            return {job.id: job for job in session.scalars(select(Job).where(Job.id.in_(ids)))}

    def figures(self) -> QueueFigures:
        return read_figures(self.database, self.now())
