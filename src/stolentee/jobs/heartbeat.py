"""A running job's lease, renewed: one heartbeat per job, renewing in its own thread or beaten by
the worker's shared one, and the errors that end a run early."""

from __future__ import annotations

import logging
import threading

from stolentee.jobs.queue import JobQueue

log = logging.getLogger(__name__)


class LeaseLostError(Exception):
    """Raised by :meth:`Heartbeat.check`: the job is no longer this run's to finish."""


class Heartbeat:
    """A running job's lease: renewed by the worker's heartbeat thread (or by :meth:`start`).

    Handed to the handler, which may call :meth:`check` between steps to stop early when the
    lease was lost or the worker is stopping past its deadline (the job was handed back), and
    may use :attr:`context`, what was read with the lease (:data:`~stolentee.jobs.queue.LeaseHook`).

    Inside a :class:`Worker` the leases of all running jobs are renewed together by one thread
    (:meth:`JobQueue.heartbeat_many`); :meth:`start` gives a lone heartbeat its own thread.
    """

    def __init__(
        self,
        *,
        queue: JobQueue,
        job_id: str,
        owner: str,
        interval_s: float,
        context: object = None,
    ) -> None:
        self.queue = queue
        self.job_id = job_id
        self.owner = owner
        self.interval_s = interval_s
        # What the queue's lease hook for the job's kind read in the lease's transaction (the
        # design of a design job); None without one. The handler may use it instead of a read.
        self.context = context
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._cancelled = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def lost(self) -> bool:
        """The lease was lost (expired and taken over, or reaped): results will be discarded."""
        return self._lost.is_set()

    @property
    def cancelled(self) -> bool:
        """The worker stopped past its graceful deadline and handed the job back."""
        return self._cancelled.is_set()

    @property
    def stopped(self) -> bool:
        """The run is over (or finishing): its lease needs no more renewals."""
        return self._stop.is_set()

    def check(self) -> None:
        """Raise :class:`LeaseLostError` when the run should stop early."""
        if self.lost or self.cancelled:
            raise LeaseLostError(f"job {self.job_id}: lease lost or handed back")

    def beat(self) -> bool:
        """Renew the lease now (long steps may call this); ``False`` if it was lost."""
        if self.lost:
            return False
        try:
            held = self.queue.heartbeat(self.job_id, self.owner)
        except Exception as exc:  # noqa: BLE001 - database down: retry until the lease expires
            log.warning("heartbeat for job %s failed: %s", self.job_id, exc)
            return True
        if not held:
            self.mark_lost()
        return held

    def mark_lost(self) -> None:
        """The lease is gone (a renewal found it taken): this run's result will be discarded."""
        if self.stopped or self.lost:
            return  # finished meanwhile: its completion, not a loss, ended the lease
        log.warning("job %s: lease lost; this run's result will be discarded", self.job_id)
        self._lost.set()

    def start(self) -> None:
        """Renew in a thread of its own every ``interval_s`` (a heartbeat outside a Worker)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"stolentee-heartbeat-{self.job_id[:8]}", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout=5)

    def cancel(self) -> None:
        self._cancelled.set()
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            if not self.beat():
                return
