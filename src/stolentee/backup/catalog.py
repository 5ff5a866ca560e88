"""The backups a target holds: list them, verify one, prune by retention.

A backup is complete when its manifest exists. A directory under ``backups/`` without one is a
backup that was killed or is still running: ``list`` shows it as incomplete, ``restore`` never
uses it, and ``prune`` removes it once it is older than :data:`INCOMPLETE_GRACE`. Its objects
stay in the pool for the next run to reuse, unless nothing names them by then.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from stolentee.backup.manifest import (
    BACKUPS_PREFIX,
    OBJECTS_PREFIX,
    BackupError,
    BackupManifest,
    manifest_key,
)
from stolentee.backup.objects import check_pool_object, read_digest
from stolentee.backup.targets import BackupTarget
from stolentee.errors import ObjectNotFoundError

# A backup still running must not lose its files (nor the pool objects it wrote and has not
# named yet) to a prune running beside it: nothing younger than this is removed.
INCOMPLETE_GRACE = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Listing:
    complete: list[BackupManifest]  # oldest first
    incomplete: dict[str, datetime] = field(default_factory=dict)  # id -> newest file's time


def list_backups(target: BackupTarget) -> Listing:
    """Every backup of the target; manifests are read (and checked for readability)."""
    files: dict[str, list[str]] = {}
    newest: dict[str, datetime] = {}
    for info in target.iterate(BACKUPS_PREFIX):
        backup_id, _, name = info.key[len(BACKUPS_PREFIX) :].partition("/")
        files.setdefault(backup_id, []).append(name)
        newest[backup_id] = max(newest.get(backup_id, info.last_modified), info.last_modified)
    complete = sorted(
        (
            load_manifest(target, backup_id)
            for backup_id in files
            if "manifest.json" in files[backup_id]
        ),
        key=lambda manifest: (manifest.created, manifest.id),
    )
    incomplete = {
        backup_id: newest[backup_id]
        for backup_id in sorted(files)
        if "manifest.json" not in files[backup_id]
    }
    return Listing(complete=complete, incomplete=incomplete)


def load_manifest(target: BackupTarget, backup_id: str) -> BackupManifest:
    key = manifest_key(backup_id)
    try:
        data = target.get(key)
    except ObjectNotFoundError:
        raise BackupError(
            f"backup {backup_id!r} has no manifest in {target.spec}: it does not exist or is "
            "incomplete (see `stolentee backup list`)"
        ) from None
    return BackupManifest.from_json(data, where=f"{target.spec} {key}")


def newest(target: BackupTarget) -> BackupManifest | None:
    """The newest complete backup, reading only its manifest (ids sort by start time)."""
    with_manifest = [
        info.key[len(BACKUPS_PREFIX) :].partition("/")[0]
        for info in target.iterate(BACKUPS_PREFIX)
        if info.key.endswith("/manifest.json")
    ]
    return load_manifest(target, max(with_manifest)) if with_manifest else None


def latest(target: BackupTarget) -> BackupManifest:
    found = newest(target)
    if found is None:
        raise BackupError(f"{target.spec} holds no complete backup")
    return found


def verify_backup(target: BackupTarget, manifest: BackupManifest) -> list[str]:
    """Every problem found by reading every file of the backup (empty: it is sound)."""
    problems: list[str] = []
    dump = manifest.database
    try:
        got = read_digest(target, dump.key)
        if got != (dump.sha256, dump.size):
            problems.append(
                f"{dump.key}: corrupt ({got[1]} bytes hashing to {got[0]}; the manifest says "
                f"{dump.size} bytes, {dump.sha256})"
            )
    except BackupError as exc:
        problems.append(exc.detail)
    seen: set[str] = set()
    for entry in manifest.objects:
        if entry.sha256 in seen:
            continue
        seen.add(entry.sha256)
        try:
            check_pool_object(target, entry.sha256, entry.size)
        except BackupError as exc:
            problems.append(f"{entry.key}: {exc.detail}")
    return problems


# --- retention ---------------------------------------------------------------------------------


def kept_by_retention(
    manifests: list[BackupManifest], *, keep_daily: int, keep_weekly: int
) -> set[str]:
    """The ids to keep: the newest backup of each of the last ``keep_daily`` days that have one,
    and of each of the last ``keep_weekly`` ISO weeks that have one. The newest is always kept."""
    newest_first = sorted(manifests, key=lambda m: m.created, reverse=True)
    keep: set[str] = {newest_first[0].id} if newest_first else set()
    for bucket_of, count in (
        (lambda m: m.created.date().isoformat(), keep_daily),
        (lambda m: "{}-W{}".format(*m.created.isocalendar()[:2]), keep_weekly),
    ):
        buckets: list[str] = []
        for manifest in newest_first:
            bucket = bucket_of(manifest)
            if bucket not in buckets:
                buckets.append(bucket)
                if len(buckets) > count:
                    break
                keep.add(manifest.id)
    return keep


@dataclass(frozen=True, slots=True)
class PruneResult:
    removed_backups: list[str]
    removed_incomplete: list[str]
    removed_objects: int
    removed_bytes: int


def prune(
    target: BackupTarget,
    *,
    keep_daily: int,
    keep_weekly: int,
    dry_run: bool = False,
    now: datetime | None = None,
) -> PruneResult:
    """Remove backups retention does not keep, then the pool objects no kept backup names.

    Pool objects younger than :data:`INCOMPLETE_GRACE` stay (a running backup may be about to
    name them), so a prune never breaks a backup, finished or under way.
    """
    moment = now or datetime.now(UTC)
    listing = list_backups(target)
    keep = kept_by_retention(listing.complete, keep_daily=keep_daily, keep_weekly=keep_weekly)
    doomed = [manifest for manifest in listing.complete if manifest.id not in keep]
    stale = [
        backup_id
        for backup_id, newest in listing.incomplete.items()
        if moment - newest > INCOMPLETE_GRACE
    ]
    named = {
        entry.sha256
        for manifest in listing.complete
        if manifest.id in keep
        for entry in manifest.objects
    }
    orphans = [
        info
        for info in target.iterate(OBJECTS_PREFIX)
        if info.key.rsplit("/", 1)[-1] not in named
        and moment - info.last_modified > INCOMPLETE_GRACE
    ]
    if not dry_run:
        for backup_id in [manifest.id for manifest in doomed] + stale:
            _remove_backup_files(target, backup_id)
        for info in orphans:
            target.delete(info.key)
    return PruneResult(
        removed_backups=[manifest.id for manifest in doomed],
        removed_incomplete=stale,
        removed_objects=len(orphans),
        removed_bytes=sum(info.size for info in orphans),
    )


def _remove_backup_files(target: BackupTarget, backup_id: str) -> None:
    """The manifest first: from then on the backup is visibly incomplete, never half-valid."""
    prefix = f"{BACKUPS_PREFIX}{backup_id}/"
    target.delete(manifest_key(backup_id))
    for info in list(target.iterate(prefix)):
        target.delete(info.key)
