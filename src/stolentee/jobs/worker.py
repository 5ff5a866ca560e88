"""The job worker: N consumer threads, one heartbeat thread, one reaper thread.

Each consumer thread loops: receive a job id from the transport → :meth:`JobQueue.lease` it
(nothing to do when that returns ``None``: a duplicate or stale message) → register the run's
:class:`Heartbeat` → call the handler registered for the job's kind → ``complete`` with its
result, or ``fail`` (retryable for any exception, permanent for :class:`PermanentJobError`).
A handler may return a :class:`Completion` instead of a plain result: its ``within`` is committed
in the very transaction that marks the job done, and only if this run still holds the lease.
A handler whose heartbeat reports the lease lost has its result discarded: the job belongs to
another run now, and the output it wrote is content-addressed, so the same file either way.

One heartbeat thread per worker renews the leases of every running job every ``heartbeat_s``
with a single UPDATE (:meth:`JobQueue.heartbeat_many`), and marks the runs whose lease is gone
as lost; no thread is started or stopped per job.

One background thread moves due delayed messages onto the queue (about twice a second), re-sends
queued jobs whose messages went missing every ``resend_check_s`` and runs the full
:meth:`~stolentee.jobs.reaper.Reaper.reap` every ``reaper_interval_s``; every worker process runs
one, and they race harmlessly.

Failures of the infrastructure are kept apart from failures of the job: a lease that fails (the
database restarting) sends its message again after a short delay instead of dropping it; storing
an outcome is tried again while the database is away; and a handler that raises one of
``stall_errors`` (storage, database) has its run recorded as a stall, retried without using up
an attempt (:meth:`JobQueue.fail`).

Stopping (:meth:`Worker.stop`, SIGTERM/SIGINT under :meth:`Worker.run_forever`): consumers take
no new message; jobs already running get ``graceful_timeout_s`` to finish (their leases are
still renewed meanwhile); those still running then are handed back with :meth:`JobQueue.release`
(queued again at once, no attempt counted) and their handlers' results will be discarded. A
second signal skips the wait. Before handing anything back, the consumer threads that are not
running a job are waited for (at most one receive timeout): one of them still blocked in a
receive could otherwise take the handed-back message off the queue while the process exits, and
the job would wait for the reaper (``resend_after_s``) instead of the next worker.

The same class runs in ``stolentee worker`` processes and inside the API server (threads on the
embedded default); nothing here imports the web framework or the CLI.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import TypeVar

from stolentee.db.models import Job
from stolentee.jobs.heartbeat import Heartbeat, LeaseLostError
from stolentee.jobs.queue import JobQueue
from stolentee.jobs.reaper import Reaper
from stolentee.jobs.runs import (
    DATABASE_ERRORS,
    INFRASTRUCTURE_ERRORS,
    Completion,
    Handler,
    PermanentJobError,
    describe_error,
)
from stolentee.jobs.states import QUEUED

log = logging.getLogger(__name__)

_T = TypeVar("_T")

DEFAULT_GRACEFUL_TIMEOUT_S = 30.0
IDLE_RECEIVER_GRACE_S = 1.0  # on stop: beyond one receive timeout, for receivers to return
SCHEDULER_TICK_S = 0.5  # how often due delayed messages are moved onto the queue
MAX_ERROR_BACKOFF_S = 5.0
# The database being away: a run's outcome is stored again this long before it is given up (the
# job keeps its lease meanwhile, as long as it lasts), with the error backoff between tries.
SETTLE_FOR_S = 30.0


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """Counters since the worker started."""

    leased: int
    done: int
    failed_runs: int
    discarded: int  # runs whose lease was lost before they finished
    released: int
    reaper_passes: int


@dataclass(slots=True)
class _Running:
    job_id: str
    owner: str
    heartbeat: Heartbeat | None


def default_owner() -> str:
    """``hostname:pid:random``: unique per worker process, readable in the jobs table."""
    return f"{socket.gethostname()[:200]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    """Runs jobs from a :class:`JobQueue` with ``concurrency`` threads. ``start``/``stop``."""

    def __init__(
        self,
        *,
        queue: JobQueue,
        handlers: Mapping[str, Handler],
        concurrency: int | None = None,
        owner: str | None = None,
        reaper: bool = True,
        name: str = "stolentee-worker",
        permanent_errors: tuple[type[BaseException], ...] = (),
        stall_errors: tuple[type[BaseException], ...] = INFRASTRUCTURE_ERRORS,
        housekeeping: Sequence[Callable[[], object]] = (),
    ) -> None:
        settings = queue.settings
        self.queue = queue
        self.transport = queue.transport
        self.handlers = dict(handlers)
        self.concurrency = concurrency or settings.worker_concurrency
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.owner = owner or default_owner()
        self.name = name
        # Exceptions that fail a job without retry, besides PermanentJobError (e.g. the
        # pipeline's bad-input errors: retrying a file that is not an image cannot help).
        self.permanent_errors: tuple[type[BaseException], ...] = (
            PermanentJobError,
            *permanent_errors,
        )
        # Exceptions that mean the infrastructure failed the run, not the job (JobQueue.fail).
        self.stall_errors = stall_errors
        # A lease must survive a missed beat or two.
        self.heartbeat_s = min(settings.heartbeat_s, settings.lease_s / 3)
        self.reaper_interval_s = settings.reaper_interval_s
        self.resend_check_s = settings.resend_check_s
        self.reaper = Reaper(queue)
        # Passes run with every reap (e.g. designs whose row disagrees with their job).
        self.housekeeping = tuple(housekeeping)
        self._with_reaper = reaper
        self._stopping = threading.Event()
        self._hurry = threading.Event()
        self._abandon = threading.Event()
        self._lock = threading.Lock()
        self._running: dict[int, _Running] = {}
        self._threads: list[threading.Thread] = []
        self._reaper_thread: threading.Thread | None = None
        self._heartbeat_thread: threading.Thread | None = None
        self._heartbeats_done = threading.Event()
        self._started = False
        self._lease_errors = 0  # consecutive failed leases, across consumer threads
        self._counts = {
            "leased": 0,
            "done": 0,
            "failed_runs": 0,
            "discarded": 0,
            "released": 0,
            "reaper_passes": 0,
        }

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._started and not self._stopping.is_set()

    def stats(self) -> WorkerStats:
        with self._lock:
            return WorkerStats(**self._counts)

    def running_jobs(self) -> list[str]:
        with self._lock:
            return [run.job_id for run in self._running.values()]

    def start(self) -> None:
        if self._started:
            raise RuntimeError("a Worker starts once")
        self._started = True
        for slot in range(self.concurrency):
            thread = threading.Thread(
                target=self._consume, args=(slot,), name=f"{self.name}-{slot}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        self._heartbeat_thread = threading.Thread(
            target=self._heartbeat_loop, name=f"{self.name}-heartbeat", daemon=True
        )
        self._heartbeat_thread.start()
        if self._with_reaper:
            self._reaper_thread = threading.Thread(
                target=self._reap_loop, name=f"{self.name}-reaper", daemon=True
            )
            self._reaper_thread.start()
        log.info(
            "worker %s started: %d thread(s), %s queue, lease %g s, heartbeat %g s",
            self.owner,
            self.concurrency,
            self.transport.backend,
            self.queue.settings.lease_s,
            self.heartbeat_s,
        )

    def stop(self, graceful_timeout_s: float = DEFAULT_GRACEFUL_TIMEOUT_S) -> None:
        """Stop taking jobs, let running ones finish within the timeout, hand back the rest."""
        if not self._started or self._stopping.is_set():
            return
        self._stopping.set()
        self.transport.wake_all()
        deadline = time.monotonic() + max(0.0, graceful_timeout_s)
        for thread in self._threads:
            while thread.is_alive() and not self._hurry.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                thread.join(min(remaining, 0.1))
        self._join_idle_receivers()
        with self._lock:
            self._abandon.set()
            leftovers = list(self._running.values())
        for run in leftovers:
            self._hand_back(run)
        self._heartbeats_done.set()
        if self._heartbeat_thread is not None:
            self._heartbeat_thread.join(timeout=5)
        if self._reaper_thread is not None:
            self._reaper_thread.join(timeout=5)
        log.info("worker %s stopped (%d job(s) handed back)", self.owner, len(leftovers))

    def _join_idle_receivers(self) -> None:
        """Wait (at most one receive timeout) for the consumer threads not running a job.

        They take no new job once ``_stopping`` is set, but one still blocked in a receive
        could get the message that :meth:`_hand_back` is about to send; it would put it back,
        unless the process exits first, and then the job waits for the reaper's re-send.
        """
        deadline = time.monotonic() + self.transport.poll_s + IDLE_RECEIVER_GRACE_S
        for slot, thread in enumerate(self._threads):
            with self._lock:
                busy = slot in self._running
            if busy or thread is threading.current_thread():
                continue
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning(
                    "worker %s: consumer %d did not return from its receive", self.owner, slot
                )

    def run_forever(self, graceful_timeout_s: float = DEFAULT_GRACEFUL_TIMEOUT_S) -> None:
        """Run until SIGTERM or SIGINT (main thread only), then :meth:`stop` gracefully."""
        signalled = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            if signalled.is_set():
                self._hurry.set()  # a second signal: hand back what runs, now
            signalled.set()
            log.info("worker %s: received %s", self.owner, signal.Signals(signum).name)

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            while not signalled.wait(1.0):
                pass
        finally:
            try:
                self.stop(graceful_timeout_s)
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    # --- consuming ----------------------------------------------------------------------------

    def _bump(self, counter: str) -> None:
        with self._lock:
            self._counts[counter] += 1

    def _consume(self, slot: int) -> None:
        owner = f"{self.owner}/{slot}"  # per thread: a lease is fenced to one thread's run
        errors = 0
        doubtful: str | None = None  # a job whose lease may have committed unseen
        while not self._stopping.is_set():
            if doubtful is not None:
                doubtful = self._resolve_doubtful(doubtful, owner)
                continue
            try:
                job_id = self.transport.receive()
                errors = 0
            except Exception as exc:  # noqa: BLE001 - transport down (Redis restarting): retry
                errors += 1
                wait_s = min(MAX_ERROR_BACKOFF_S, 0.1 * 2**errors)
                log.warning(
                    "receiving from the job queue failed (%s); retrying in %.1f s", exc, wait_s
                )
                self._stopping.wait(wait_s)
                continue
            if job_id is None:
                continue
            if self._stopping.is_set():
                self.queue.send(job_id)  # not ours to run any more: put the message back
                return
            try:
                doubtful = self._run_one(slot, job_id, owner)
            except Exception:
                log.exception("job %s: unexpected worker error; the reaper will recover it", job_id)

    def _run_one(self, slot: int, job_id: str, owner: str) -> str | None:
        """Lease and run one job; returns its id when leasing failed in a way that may have
        committed all the same (the connection lost on the way back), else ``None``."""
        try:
            leased = self.queue.lease_with_context(job_id, owner)
            if leased is None:
                self.reaper.resend_if_early(job_id)
                return None
        except Exception as exc:  # noqa: BLE001 - the database is away: keep the message
            self._lease_failed(job_id, exc)
            return job_id
        with self._lock:
            self._lease_errors = 0
        job = leased.job
        self._bump("leased")
        run = _Running(job_id=job_id, owner=owner, heartbeat=None)
        with self._lock:
            self._running[slot] = run
            abandoned = self._abandon.is_set()
        try:
            if abandoned or self._stopping.is_set():
                self._hand_back(run)  # leased while stopping: do not start it
                return None
            heartbeat = Heartbeat(
                queue=self.queue,
                job_id=job_id,
                owner=owner,
                interval_s=self.heartbeat_s,
                context=leased.context,
            )
            with self._lock:
                run.heartbeat = heartbeat  # from now on renewed by the heartbeat thread
            try:
                self._execute(job, heartbeat, owner)
            finally:
                heartbeat.stop()
        finally:
            with self._lock:
                self._running.pop(slot, None)
        return None

    def _resolve_doubtful(self, job_id: str, owner: str) -> str | None:
        """Hand back a lease that may have been taken in this thread's name by an UPDATE whose
        answer was lost (the database went away after committing it): fenced to this thread's
        owner, which runs nothing now, so it can only hit such an orphaned lease. Until the
        database answers, this thread takes no new message. ``None`` once settled."""
        try:
            released = self.queue.release(job_id, owner)
        except Exception as exc:  # noqa: BLE001 - still away: try again shortly
            log.debug("job %s: cannot settle a doubtful lease yet (%s)", job_id, exc)
            self._stopping.wait(0.5)
            if self._stopping.is_set():
                log.warning("job %s: a doubtful lease is left to expire", job_id)
            return job_id
        if released:
            log.warning("job %s: a lease whose answer was lost had been taken; handed back", job_id)
        return None

    def _lease_failed(self, job_id: str, exc: Exception) -> None:
        """Leasing failed (the database restarting, a lease hook's read): the message is not
        dropped but sent again after a short, growing delay, and this consumer waits as long, so
        the job runs as soon as the database is back instead of after the reaper's re-send."""
        with self._lock:
            self._lease_errors += 1
            errors = self._lease_errors
        delay_s = min(MAX_ERROR_BACKOFF_S, 0.25 * 2 ** min(errors, 10))
        log.warning(
            "job %s: leasing failed (%s); trying again in %.1f s",
            job_id,
            describe_error(exc),
            delay_s,
            exc_info=not isinstance(exc, DATABASE_ERRORS),
        )
        self.queue.send(job_id, delay_s)  # a failed send is logged; the reaper re-sends then
        self._stopping.wait(delay_s)

    def _settle(self, what: str, action: Callable[[], _T]) -> _T:
        """Run ``action`` (storing a run's outcome), trying again while the database is away
        (for up to :data:`SETTLE_FOR_S`, unless the worker is abandoning its runs): a finished
        job should not wait for its lease to expire because one UPDATE met a restart."""
        deadline = time.monotonic() + SETTLE_FOR_S
        errors = 0
        while True:
            try:
                return action()
            except DATABASE_ERRORS as exc:
                errors += 1
                wait_s = min(MAX_ERROR_BACKOFF_S, 0.1 * 2**errors)
                if time.monotonic() + wait_s > deadline or self._abandon.is_set():
                    raise
                log.warning("%s failed (%s); retrying in %.1f s", what, exc, wait_s)
                self._abandon.wait(wait_s)

    def _execute(self, job: Job, heartbeat: Heartbeat, owner: str) -> None:
        started = time.monotonic()
        handler = self.handlers.get(job.kind)
        if handler is None:
            self._fail(
                job, heartbeat, owner, f"no handler for job kind {job.kind!r}", retryable=False
            )
            return
        try:
            outcome = handler(job, heartbeat)
        except Exception as exc:
            if isinstance(exc, LeaseLostError) and (heartbeat.lost or heartbeat.cancelled):
                self._bump("discarded")  # it stopped early, as asked: no failure to record
                log.info("job %s stopped early: %s", job.id, describe_error(exc))
                return
            if isinstance(exc, self.permanent_errors):
                self._fail(job, heartbeat, owner, describe_error(exc), retryable=False)
                return
            stalled = isinstance(exc, self.stall_errors)
            log.warning(
                "job %s (%s) attempt %d/%d raised %s",
                job.id,
                job.kind,
                job.attempts,
                job.max_attempts,
                describe_error(exc),
                exc_info=True,
            )
            self._fail(job, heartbeat, owner, describe_error(exc), retryable=True, stalled=stalled)
            return
        heartbeat.stop()  # no renewal needed past this point; complete() checks the lease
        if heartbeat.lost or heartbeat.cancelled:
            self._bump("discarded")
            log.warning("job %s: finished after its lease was lost; result discarded", job.id)
            return
        completion = outcome if isinstance(outcome, Completion) else Completion(result=outcome)
        try:
            completed = self._settle(
                f"job {job.id}: storing the result",
                lambda: self.queue.complete(
                    job.id, owner, completion.result, within=completion.within
                ),
            )
        except Exception as exc:  # noqa: BLE001 - e.g. a result that is not JSON: a failed run
            self._fail(
                job,
                heartbeat,
                owner,
                f"storing the result failed: {describe_error(exc)}",
                retryable=True,
                stalled=isinstance(exc, self.stall_errors),
            )
            return
        if completed:
            self._bump("done")
            log.info("job %s (%s) done in %.3f s", job.id, job.kind, time.monotonic() - started)
        else:
            self._bump("discarded")
            log.warning("job %s: lease lost before completion; result discarded", job.id)
        if completion.after is not None:
            try:
                completion.after(completed)
            except Exception:
                log.exception("job %s: clean-up after completion failed", job.id)

    def _fail(
        self,
        job: Job,
        heartbeat: Heartbeat,
        owner: str,
        error: str,
        *,
        retryable: bool,
        stalled: bool = False,
    ) -> None:
        if heartbeat.lost or heartbeat.cancelled:
            self._bump("discarded")
            return
        left = self._settle(
            f"job {job.id}: recording the failure",
            lambda: self.queue.fail(job.id, owner, error, retryable=retryable, stalled=stalled),
        )
        if left is None:
            self._bump("discarded")
            return
        self._bump("failed_runs")
        if left.state == QUEUED:
            log.info("job %s (%s) will be retried: %s", job.id, job.kind, error)
        else:
            log.warning("job %s (%s) failed: %s", job.id, job.kind, left.error)

    def _hand_back(self, run: _Running) -> None:
        if run.heartbeat is not None:
            run.heartbeat.cancel()
        try:
            released = self.queue.release(run.job_id, run.owner)
        except Exception:
            log.exception("handing back job %s failed; its lease will expire", run.job_id)
            return
        if released:
            self._bump("released")
            log.info("job %s handed back unfinished", run.job_id)

    def _hand_back_forgotten(self) -> None:
        """Hand back the jobs held in this process's name that none of its threads runs (see
        :meth:`Reaper.forgotten_runs`): three missed heartbeats, so a run just leased or still
        beating is never among them, and the release is fenced to the owner anyway."""
        forgotten = self.reaper.forgotten_runs(f"{self.owner}/", 3 * self.heartbeat_s)
        with self._lock:
            running = {(run.job_id, run.owner) for run in self._running.values()}
        for job_id, owner in forgotten:
            if (job_id, owner) not in running and self.queue.release(job_id, owner):
                log.warning(
                    "job %s: held in this worker's name but not running; handed back", job_id
                )

    # --- heartbeat ----------------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        """Renew every running job's lease every ``heartbeat_s``, one UPDATE for all of them,
        until :meth:`stop` has handed back what was left (running jobs keep their leases while
        they get their graceful time)."""
        while not self._heartbeats_done.wait(self.heartbeat_s):
            with self._lock:
                beating = [
                    run.heartbeat
                    for run in self._running.values()
                    if run.heartbeat is not None and not run.heartbeat.stopped
                ]
            if not beating:
                continue
            try:
                held = self.queue.heartbeat_many([(hb.job_id, hb.owner) for hb in beating])
            except Exception as exc:  # noqa: BLE001 - database down: retry until leases expire
                log.warning("renewing %d lease(s) failed: %s", len(beating), exc)
                continue
            for heartbeat in beating:
                if (heartbeat.job_id, heartbeat.owner) not in held:
                    heartbeat.mark_lost()

    # --- reaper -------------------------------------------------------------------------------

    def _reap_loop(self) -> None:
        tick = min(SCHEDULER_TICK_S, self.reaper_interval_s, self.resend_check_s)
        next_reap = next_check = time.monotonic()  # at once: recover what a crash left
        while not self._stopping.is_set():
            try:
                self.transport.promote_due()
            except Exception as exc:  # noqa: BLE001 - transport down: next tick retries
                log.warning("moving delayed job messages failed: %s", exc)
            now = time.monotonic()
            if now >= next_check:
                try:
                    self.reaper.resend_missing()
                    self._hand_back_forgotten()
                except Exception as exc:  # noqa: BLE001 - database away: the next check retries
                    log.warning("checking for missing job messages failed: %s", exc)
                next_check = now + self.resend_check_s
            if now >= next_reap:
                for task in (self.reaper.reap, *self.housekeeping):
                    try:
                        task()
                    except Exception:
                        log.exception("reaper pass %s failed", getattr(task, "__name__", task))
                self._bump("reaper_passes")
                next_reap = time.monotonic() + self.reaper_interval_s
            self._stopping.wait(tick)
