"""A worker process for the process-level tests: ``python -m tests.jobs.worker_main``.

Settings come from the environment exactly as for ``stolentee worker`` (DATABASE_URL,
REDIS_URL, STOLENTEE_DATA_DIR, STOLENTEE_JOB_*); it runs the test handlers until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import logging

from stolentee.config import Settings
from stolentee.db.engine import Database
from stolentee.jobs.queue import JobQueue
from stolentee.jobs.transport import build_transport
from stolentee.jobs.worker import Worker

from .handlers import HANDLERS


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--graceful-timeout-s", type=float, default=10.0)
    parser.add_argument("--resend-after-s", type=float, default=None)
    parser.add_argument("--poll-s", type=float, default=0.2)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(process)d %(threadName)s %(message)s"
    )
    settings = Settings()
    database = Database(settings=settings.database)
    transport = build_transport(settings, poll_s=args.poll_s)
    queue = JobQueue(
        database=database,
        transport=transport,
        settings=settings.queue,
        resend_after_s=args.resend_after_s,
    )
    worker = Worker(queue=queue, handlers=HANDLERS)
    try:
        worker.run_forever(graceful_timeout_s=args.graceful_timeout_s)
    finally:
        transport.close()
        database.dispose()


if __name__ == "__main__":
    main()
