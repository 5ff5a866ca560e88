"""Purges as jobs: queued where URLs stop being valid, run by any worker, retried by the queue.

A design's DELETE (and a cutout whose last design went, and a storage migration's URL rewrite
or rollback) queues one ``cdn_purge`` job with the URLs to forget, after its own change is
committed; the request never waits for the CDN. The worker's handler calls the configured
:class:`~stolentee.cdn.purge.Purger`: a retryable failure (network, 5xx, 429) fails the attempt
and the queue tries again with backoff (:data:`RETRY_BACKOFF_S`, doubling); a refusal
fails the job for good (``stolentee jobs retry`` once the configuration is fixed). Each outcome
is counted (``stolentee_cdn_purges_total``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from stolentee.cdn.purge import Purger, PurgeRejectedError, PurgeRetryableError
from stolentee.db.models import Job
from stolentee.jobs.heartbeat import Heartbeat
from stolentee.jobs.queue import JobQueue
from stolentee.jobs.runs import Handler, PermanentJobError

log = logging.getLogger(__name__)
CDN_PURGE_JOB = "cdn_purge"
MAX_URLS_PER_JOB = 300
RETRY_BACKOFF_S = 10.0  # first retry of a failed purge; the queue doubles it each time
Observe = Callable[[str, str, int], None]  # backend, outcome, URLs


def enqueue_purge(queue: JobQueue, purger: Purger, urls: Sequence[str]) -> list[str]:
    """Queue the purge of ``urls`` (deduplicated, in jobs of at most 300); the job ids.
    Nothing is queued when no purge backend is configured."""
    if purger.name == "none":
        return []
    unique = list(dict.fromkeys(url for url in urls if url))
    ids = []
    for start in range(0, len(unique), MAX_URLS_PER_JOB):
        job = queue.enqueue(CDN_PURGE_JOB, {"urls": unique[start : start + MAX_URLS_PER_JOB]})
        ids.append(job.id)
    return ids


def purge_handler(purger: Purger, *, observe: Observe | None = None) -> Handler:
    def handle(job: Job, heartbeat: Heartbeat) -> dict[str, Any]:
        urls = [str(url) for url in job.payload.get("urls", [])]
        try:
            purger.purge(urls)
        except PurgeRejectedError as exc:
            _count(observe, purger.name, "rejected", len(urls))
            raise PermanentJobError(str(exc)) from None
        except PurgeRetryableError:
            _count(observe, purger.name, "retried", len(urls))
            raise
        _count(observe, purger.name, "ok", len(urls))
        log.info("CDN (%s): purged %d URLs", purger.name, len(urls))
        return {"purged": len(urls), "backend": purger.name}

    return handle


def _count(observe: Observe | None, backend: str, outcome: str, urls: int) -> None:
    if observe is not None:
        observe(backend, outcome, urls)
