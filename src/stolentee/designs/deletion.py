"""Deleting a design: its row, its files, and the CDN's copies of them.

The row goes first, and in the same transaction the ``cdn_purge`` job for the URLs it leaves
behind (the original, and the cutout when no other design shares it) is stored, so the purge is
never lost: a crash after the commit leaves a queued job the reaper sends. Then the files, then
the job's message. On a full disk, the delete gives up the disk reserve and tries once more
(:mod:`stolentee.storage.diskspace`: deleting must work when the disk is full).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from stolentee.cdn.jobs import CDN_PURGE_JOB
from stolentee.cdn.purge import Purger
from stolentee.db.models import Job
from stolentee.designs.store import DesignRecord, DesignStore
from stolentee.designs.views import object_url
from stolentee.errors import InsufficientStorageError
from stolentee.jobs.queue import JobQueue
from stolentee.storage.base import Storage
from stolentee.storage.diskspace import DiskSpace


def delete_design(
    design_id: str,
    *,
    owner: str,
    designs: DesignStore,
    storage: Storage,
    queue: JobQueue,
    purger: Purger,
    disk: DiskSpace,
) -> DesignRecord:
    purges: list[Job] = []
    orphaned_cutout: list[str] = []

    def within(session: Session, record: DesignRecord, cutout_orphaned: bool) -> None:
        purges.clear()
        orphaned_cutout.clear()
        urls = [object_url(storage, record, record.original_key)]
        if cutout_orphaned and record.cutout_key is not None:
            orphaned_cutout.append(record.cutout_key)
            urls.append(object_url(storage, record, record.cutout_key))
        if purger.name != "none":
            job = queue.new_job(CDN_PURGE_JOB, {"urls": urls})
            session.add(job)
            purges.append(job)

    try:
        record = designs.delete(design_id, owner=owner, within=within)
    except InsufficientStorageError:
        if not disk.release_reserve():
            raise
        record = designs.delete(design_id, owner=owner, within=within)
    storage.delete(record.original_key)
    for key in orphaned_cutout:
        storage.delete(key)
    for job in purges:
        if not queue.send(job.id):
            queue.mark_unsent(job.id)
    disk.keep_reserve()  # taken back once there is room
    return record
