"""What a job run is made of: the handler a job kind registers, what it may return, and how
the worker sorts the errors it raises (the job's fault, or the infrastructure's)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError

from stolentee.db.models import Job
from stolentee.errors import (
    DatabaseBusyError,
    DatabaseUnavailableError,
    QueryTimeoutError,
    StorageError,
)
from stolentee.jobs.heartbeat import Heartbeat
from stolentee.jobs.queue import Within

# Failures of the infrastructure, not of the job: storage (a full disk, an unreachable bucket)
# and the database (restarting, busy, slow). A run failed by one of these "stalls" (see
# JobQueue.fail): retried for a while without using up attempts.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    DatabaseUnavailableError,
    DatabaseBusyError,
    QueryTimeoutError,
    OperationalError,
    InterfaceError,
)
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (StorageError, *DATABASE_ERRORS)


class PermanentJobError(Exception):
    """Raised by a handler: the job cannot succeed (bad input...); fail it without retrying."""


@dataclass(frozen=True, slots=True)
class Completion:
    """What a handler may return instead of a plain result.

    ``result`` is stored on the job. ``within(connection, job)`` runs in the transaction that marks
    the job done, right after the UPDATE that proves this run still holds the lease (it is not
    called otherwise), so its writes are committed together with ``done`` or not at all; it
    returns ``False`` when the job kind's follow-up hook has nothing to do for this job (see
    :meth:`JobQueue.complete`). ``after(completed)`` runs once that transaction is over (for
    clean-up outside the database), with whether the job was completed by this run.
    """

    result: dict[str, Any] | None = None
    within: Within | None = None
    after: Callable[[bool], None] | None = None


JobResult = dict[str, Any] | Completion | None


Handler = Callable[[Job, Heartbeat], JobResult]


def describe_error(exc: BaseException) -> str:
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
