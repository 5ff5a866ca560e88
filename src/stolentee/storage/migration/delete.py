"""Deleting the source after a migration: only objects the manifest shows verified in the
destination and unchanged since, each one recorded."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from stolentee.errors import ConflictError, ObjectNotFoundError
from stolentee.storage.base import (
    ObjectInfo,
    Storage,
    validate_prefix,
)
from stolentee.storage.migration.events import (
    KEYS_NAMED_IN_ERRORS,
    ProgressCallback,
    ProgressEvent,
    ProgressStatus,
)
from stolentee.storage.migration.manifest import (
    Manifest,
)

logger = logging.getLogger(__name__)


class DeleteRefusedError(ConflictError):
    """The source may not be deleted: some of its objects are not verified copies (yet)."""

    code = "delete_source_refused"
    title = "Source deletion refused"


@dataclass(frozen=True, slots=True)
class DeletePlan:
    """The source objects :func:`delete_source` may delete, with the heads they were checked at."""

    prefix: str
    objects: tuple[ObjectInfo, ...]

    @property
    def object_count(self) -> int:
        return len(self.objects)

    @property
    def total_bytes(self) -> int:
        return sum(info.size for info in self.objects)


def check_delete_allowed(source: Storage, manifest: Manifest, *, prefix: str = "") -> DeletePlan:
    """The plan to delete the source under ``prefix``, if every object in it is a verified copy.

    Each listed object's sha256 must match that of its latest manifest record, and that record
    must be a verified copy or skip. Otherwise :class:`DeleteRefusedError` names the
    objects never verified and those changed since.
    """
    validate_prefix(prefix)
    verified = manifest.verified_keys()
    covered: list[ObjectInfo] = []
    unverified: list[str] = []
    changed: list[str] = []
    for info in source.iterate(prefix):
        expected = verified.get(info.key)
        if expected is None:
            unverified.append(info.key)
        elif expected != info.sha256:
            changed.append(info.key)
        else:
            covered.append(info)
    if unverified or changed:
        raise DeleteRefusedError(
            _refusal_detail(unverified, changed),
            unverified_count=len(unverified),
            changed_count=len(changed),
            unverified=unverified[:KEYS_NAMED_IN_ERRORS],
            changed=changed[:KEYS_NAMED_IN_ERRORS],
        )
    return DeletePlan(prefix=prefix, objects=tuple(covered))


def _refusal_detail(unverified: list[str], changed: list[str]) -> str:
    parts = []
    if unverified:
        parts.append(f"{len(unverified)} never copied and verified (e.g. {unverified[0]!r})")
    if changed:
        parts.append(f"{len(changed)} changed since they were copied (e.g. {changed[0]!r})")
    return "refusing to delete the source: " + "; ".join(parts) + "; run the migration again"


def delete_source(
    source: Storage, plan: DeletePlan, *, progress: ProgressCallback | None = None
) -> int:
    """Delete the objects of ``plan`` from ``source``; the number actually deleted.

    An object whose sha256 changed since the plan was made (a new upload under the same key) is
    kept and logged; one already gone is counted as ``missing`` in the progress events.
    """
    deleted = bytes_done = 0
    for done, planned in enumerate(plan.objects, start=1):
        status = _delete_one(source, planned)
        deleted += status == "deleted"
        bytes_done += planned.size
        if progress is not None:
            progress(
                ProgressEvent(
                    objects_done=done,
                    bytes_done=bytes_done,
                    total_objects=plan.object_count,
                    total_bytes=plan.total_bytes,
                    key=planned.key,
                    status=status,
                )
            )
    return deleted


def _delete_one(source: Storage, planned: ObjectInfo) -> ProgressStatus:
    try:
        current = source.head(planned.key)
    except ObjectNotFoundError:
        return "missing"
    if current.sha256 != planned.sha256:
        logger.warning("%r changed since the delete was planned; keeping it", planned.key)
        return "skipped"
    return "deleted" if source.delete(planned.key) else "missing"
