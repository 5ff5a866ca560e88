"""Background jobs: a table that is the source of truth, huey as the transport, workers.

``transport`` (huey: SQLite embedded, Redis at scale, carrying job ids), ``queue`` (the
``jobs`` table: enqueue, lease, heartbeat, complete, fail, release, reap, figures) and
``worker`` (threads that run handlers, heartbeat and reap). Build one transport and one queue per
process at start-up and pass them down.
"""

from __future__ import annotations

from stolentee.jobs.figures import QueueFigures
from stolentee.jobs.heartbeat import Heartbeat
from stolentee.jobs.queue import JobQueue
from stolentee.jobs.runs import Handler, PermanentJobError
from stolentee.jobs.states import DONE, FAILED, PROCESSING, QUEUED
from stolentee.jobs.transport import Transport, build_transport
from stolentee.jobs.worker import Worker

__all__ = [
    "DONE",
    "FAILED",
    "PROCESSING",
    "QUEUED",
    "Handler",
    "Heartbeat",
    "JobQueue",
    "PermanentJobError",
    "QueueFigures",
    "Transport",
    "Worker",
    "build_transport",
]
