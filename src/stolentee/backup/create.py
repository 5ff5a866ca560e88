"""``stolentee backup create``: a consistent backup of a running instance.

Order is what makes it consistent without stopping anything: first the database snapshot (with
the keys its designs name), then every object the store lists. An object is written to the
store before the row that names it commits, so every key in the snapshot is in the store, unless
its design was deleted after the snapshot: such keys are recorded as ``deleted_during_backup``
and a restore removes those designs too. Objects uploaded after the snapshot are copied as
well (harmless: no row names them). The manifest is written last.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from stolentee import __version__
from stolentee.backup import database as db_dump
from stolentee.backup.catalog import newest
from stolentee.backup.history import record_run
from stolentee.backup.manifest import (
    OBJECTS_PREFIX,
    BackupError,
    BackupManifest,
    DatabaseDump,
    ObjectEntry,
    backup_dir,
    manifest_key,
    new_backup_id,
)
from stolentee.backup.objects import Saved, SourceGone, file_digest, read_digest, save_object
from stolentee.backup.targets import BackupTarget, parse_target
from stolentee.config import Settings
from stolentee.db.engine import Database
from stolentee.errors import ObjectNotFoundError
from stolentee.storage.base import KeyEntry, Storage

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 8


@dataclass(frozen=True, slots=True)
class Progress:
    stage: str  # "database", "objects", "manifest"
    objects_done: int
    bytes_done: int
    objects_copied: int


ProgressCallback = Callable[[Progress], None]


def pool_contents(target: BackupTarget) -> set[str]:
    """The sha256s whose bytes the target holds (from one listing of ``objects/``)."""
    return {info.key.rsplit("/", 1)[-1] for info in target.iterate(OBJECTS_PREFIX)}


def source_description(settings: Settings, database: Database) -> dict[str, str]:
    """What was backed up, without secrets: the backends and their names."""
    storage = settings.storage
    described = {
        "database": database.url.get_backend_name(),
        "database_name": str(database.url.database or ""),
        "storage": storage.backend,
    }
    if storage.backend == "s3":
        described["bucket"] = storage.s3_bucket_name
    elif storage.backend == "r2":
        described["bucket"] = storage.r2_bucket_name
    return described


def create_backup(
    *,
    settings: Settings,
    database: Database,
    store: Storage,
    target: BackupTarget,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: ProgressCallback | None = None,
    stop: threading.Event | None = None,
) -> BackupManifest:
    """Back up ``database`` and ``store`` into ``target``; returns the manifest written."""
    refuse_the_store_itself(settings, target.spec)
    backup_id = new_backup_id()
    started = datetime.now(UTC)
    report = progress or (lambda _: None)
    report(Progress("database", 0, 0, 0))
    with tempfile.TemporaryDirectory(prefix="stolentee-backup-") as scratch:
        dump_path = Path(scratch) / f"database.{db_dump.dump_format(database)}"
        snapshot = db_dump.take_snapshot(database, dump_path)
        dump = _save_dump(target, backup_id, dump_path, snapshot.format)
    pool = pool_contents(target)
    earlier = _earlier_entries(target)
    saved = _save_objects(store, target, pool, concurrency, report, stop, earlier)
    if stop is not None and stop.is_set():
        raise BackupError(f"backup {backup_id} was interrupted; it has no manifest")
    held = {entry.entry.key for entry in saved}
    deleted = sorted(snapshot.referenced_keys - held)
    for key in deleted:
        log.warning("%s was deleted while the backup ran: its design is left out", key)
    entries = sorted((item.entry for item in saved), key=lambda entry: entry.key)
    copied = [item for item in saved if item.copied]
    manifest = BackupManifest(
        id=backup_id,
        started_at=started.isoformat(),
        finished_at=datetime.now(UTC).isoformat(),
        version=__version__,
        schema_revision=snapshot.schema_revision,
        source=source_description(settings, database),
        database=dump,
        objects=entries,
        deleted_during_backup=deleted,
        copied_objects=len(copied),
        copied_bytes=sum(item.entry.size for item in copied),
    )
    report(Progress("manifest", len(saved), sum(e.size for e in entries), len(copied)))
    target.put(manifest_key(backup_id), manifest.to_json(), content_type="application/json")
    record_run(database, manifest, target.spec)
    return manifest


def refuse_the_store_itself(settings: Settings, spec: str) -> None:
    """A backup inside the store it backs up would back itself up next time, and go with it."""
    kind, location, _ = parse_target(spec)
    storage = settings.storage
    if kind == "local":
        inside = Path(location).resolve().is_relative_to(settings.storage_dir.resolve())
        same = storage.backend == "local" and inside
    else:
        bucket = storage.s3_bucket_name if kind == "s3" else storage.r2_bucket_name
        same = storage.backend == kind and location == bucket
    if same:
        raise BackupError(
            f"backup target {spec!r} is the store being backed up: use another disk or bucket"
        )


def _save_dump(target: BackupTarget, backup_id: str, path: Path, kind: str) -> DatabaseDump:
    key = f"{backup_dir(backup_id)}database.{kind}"
    with path.open("rb") as handle:
        sha256, size = file_digest(handle)
        handle.seek(0)
        target.put(key, handle, content_type="application/octet-stream")
    if read_digest(target, key) != (sha256, size):
        raise BackupError(f"{key} read back wrong from the backup target")
    return DatabaseDump(key=key, format=kind, size=size, sha256=sha256)


def _earlier_entries(target: BackupTarget) -> dict[str, ObjectEntry]:
    """The newest complete backup's objects by key (empty for a target's first backup)."""
    found = newest(target)
    return {entry.key: entry for entry in found.objects} if found is not None else {}


def _save_objects(
    store: Storage,
    target: BackupTarget,
    pool: set[str],
    concurrency: int,
    report: ProgressCallback,
    stop: threading.Event | None,
    earlier: dict[str, ObjectEntry],
) -> list[Saved]:
    """Every object of the store into the target, ``concurrency`` at a time (bounded queue).

    The cheap listing (keys, sizes, store ETags) comes first. An object the newest earlier
    backup holds with the same ETag and size, whose bytes the pool still has, is taken over
    from it with no request of its own (S3 changes an object's ETag whenever it is rewritten);
    any other object is read through its HEAD (the sha256 the store records) and copied if the
    pool lacks those bytes.
    """
    saved: list[Saved] = []
    done_bytes = 0

    def one(listed: KeyEntry) -> Saved | None:
        known = earlier.get(listed.key)
        if (
            known is not None
            and listed.store_etag
            and (known.store_etag, known.size) == (listed.store_etag, listed.size)
            and known.sha256 in pool
        ):
            return Saved(known, copied=False)
        # ``pool`` is shared: two threads meeting the same new bytes both copy them (the same
        # content to the same key), which is cheaper than a lock around every copy.
        try:
            info = store.head(listed.key)
            result = save_object(store, info, target, pool)
        except (SourceGone, ObjectNotFoundError):
            return None
        etag = info.store_etag or listed.store_etag
        return Saved(replace(result.entry, store_etag=etag), copied=result.copied)

    def collect(futures: set[Future[Saved | None]]) -> set[Future[Saved | None]]:
        nonlocal done_bytes
        finished, pending = wait(futures, return_when=FIRST_COMPLETED)
        for future in finished:
            result = future.result()
            if result is not None:
                saved.append(result)
                done_bytes += result.entry.size
        copied = sum(1 for item in saved if item.copied)
        report(Progress("objects", len(saved), done_bytes, copied))
        return pending

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="backup") as executor:
        in_flight: set[Future[Saved | None]] = set()
        for listed in store.iterate_keys(""):
            if stop is not None and stop.is_set():
                break
            in_flight.add(executor.submit(one, listed))
            if len(in_flight) >= concurrency * 2:
                in_flight = collect(in_flight)
        while in_flight:
            in_flight = collect(in_flight)
    return saved
