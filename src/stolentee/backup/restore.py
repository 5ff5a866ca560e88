"""``stolentee backup restore``: rebuild an (empty) instance's database and store from a backup.

The whole backup is verified before anything is written. Then the database is restored (at the
schema revision it had) and migrated to this version's head, every object is written to the
store and read back, and designs whose objects were deleted while the backup ran are removed.
A non-empty instance is refused unless ``force``: a restore replaces what is there.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import delete, func, inspect, or_, select

from stolentee.backup import database as db_dump
from stolentee.backup import litestream
from stolentee.backup.catalog import verify_backup
from stolentee.backup.manifest import BackupError, BackupManifest
from stolentee.backup.objects import restore_object
from stolentee.backup.targets import BackupTarget
from stolentee.config import Settings
from stolentee.db import migrate
from stolentee.db.engine import Database
from stolentee.db.models import Design, Job
from stolentee.errors import ObjectNotFoundError
from stolentee.storage.base import Storage
from stolentee.storage.migration.objects import digest

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RestoreResult:
    backup_id: str
    schema_from: str | None
    schema_to: str | None
    objects: int
    bytes: int
    removed_designs: int


def instance_contents(database: Database, store: Storage) -> list[str]:
    """What makes the instance non-empty (empty list: nothing to lose)."""
    found: list[str] = []
    tables = set(inspect(database.engine).get_table_names())
    with database.session() as session:
        for model, name in ((Design, "designs"), (Job, "jobs")):
            if name in tables:
                count = session.scalar(select(func.count()).select_from(model)) or 0
                if count:
                    found.append(f"{count} {name}")
    if next(iter(store.iterate_keys("")), None) is not None:
        found.append(f"objects in the {store.name} store")
    return found


def _refuse_unless_empty(database: Database, store: Storage, *, force: bool) -> None:
    contents = instance_contents(database, store)
    if contents and not force:
        raise BackupError(
            f"the configured instance is not empty ({', '.join(contents)}): a restore replaces "
            "it; pass --force to do so"
        )


def _refuse_unless_sound(target: BackupTarget, manifest: BackupManifest) -> None:
    """The whole backup verifies, or nothing is restored."""
    problems = verify_backup(target, manifest)
    if problems:
        shown = "; ".join(problems[:5])
        raise BackupError(
            f"backup {manifest.id} does not verify ({len(problems)} problems: {shown}); "
            "nothing was restored"
        )


def restore_backup(
    *,
    database: Database,
    store: Storage,
    target: BackupTarget,
    manifest: BackupManifest,
    force: bool = False,
    concurrency: int = 8,
    progress: Callable[[int], None] | None = None,
) -> RestoreResult:
    head = migrate.head_revision()
    known = _known_revisions()
    if manifest.schema_revision is not None and manifest.schema_revision not in known:
        raise BackupError(
            f"backup {manifest.id} has schema revision {manifest.schema_revision}, which this "
            f"version ({head}) does not know: restore it with the version that made it "
            f"({manifest.version}) or newer"
        )
    _refuse_unless_empty(database, store, force=force)
    _refuse_unless_sound(target, manifest)
    with tempfile.TemporaryDirectory(prefix="stolentee-restore-") as scratch:
        dump_path = Path(scratch) / "database"
        with dump_path.open("wb") as handle:
            _, chunks = target.open(manifest.database.key)
            got = digest(chunks, handle)  # checked again: the copy restored is the one verified
        if got != (manifest.database.sha256, manifest.database.size):
            raise BackupError(f"{manifest.database.key} changed while it was read; try again")
        db_dump.restore_dump(database, dump_path, manifest.database.format)
    after = migrate.upgrade(database)
    restore_objects(target, manifest, store, concurrency=concurrency, progress=progress)
    removed = _remove_deleted_designs(database, manifest.deleted_during_backup)
    return RestoreResult(
        backup_id=manifest.id,
        schema_from=manifest.schema_revision,
        schema_to=after,
        objects=len(manifest.objects),
        bytes=sum(entry.size for entry in manifest.objects),
        removed_designs=removed,
    )


@dataclass(frozen=True, slots=True)
class PointInTimeResult:
    at: datetime | None
    schema_to: str | None
    objects: int
    designs_without_objects: int  # uploaded after the object backup used (their bytes are lost)


def restore_point_in_time(
    *,
    settings: Settings,
    database: Database,
    store: Storage,
    at: datetime | None,
    target: BackupTarget | None = None,
    manifest: BackupManifest | None = None,
    force: bool = False,
) -> PointInTimeResult:
    """The SQLite database from its Litestream replica as it was at ``at`` (None: latest), and
    the objects from ``manifest`` (a backup of ``target``) when given."""
    _refuse_unless_empty(database, store, force=force)
    if manifest is not None and target is not None:
        _refuse_unless_sound(target, manifest)
    with tempfile.TemporaryDirectory(prefix="stolentee-restore-") as scratch:
        dump_path = Path(scratch) / "database.sqlite3"
        litestream.restore_point_in_time(settings, at, dump_path)
        db_dump.restore_dump(database, dump_path, "sqlite3")
    after = migrate.upgrade(database)
    restored = 0
    if manifest is not None and target is not None:
        restored = restore_objects(target, manifest, store)
    return PointInTimeResult(
        at=at,
        schema_to=after,
        objects=restored,
        designs_without_objects=_designs_without_objects(database, store),
    )


def _designs_without_objects(database: Database, store: Storage) -> int:
    with database.session() as session:
        rows = session.execute(select(Design.original_key, Design.cutout_key)).all()
    return sum(
        1 for original, cutout in rows
        if not store.exists(original) or (cutout is not None and not store.exists(cutout))
    )  # fmt: skip


def restore_objects(
    target: BackupTarget,
    manifest: BackupManifest,
    store: Storage,
    *,
    concurrency: int = 8,
    progress: Callable[[int], None] | None = None,
    skip_present: bool = False,
) -> int:
    """Write the backup's objects into the store, each read back; returns how many were written.
    ``skip_present``: leave objects the store already holds with the same sha256."""
    done = written = 0

    def one(index: int) -> bool:
        entry = manifest.objects[index]
        if skip_present:
            try:
                if store.head(entry.key).sha256 == entry.sha256:
                    return False
            except ObjectNotFoundError:
                pass
        restore_object(target, entry, store)
        return True

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="restore") as pool:
        for wrote in pool.map(one, range(len(manifest.objects))):
            done += 1
            written += wrote
            if progress is not None:
                progress(done)
    return written


def _known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config())
    return {revision.revision for revision in script.walk_revisions()}


def _remove_deleted_designs(database: Database, keys: list[str]) -> int:
    """Designs deleted while the backup ran (their objects were gone): not restored either."""
    if not keys:
        return 0
    with database.session() as session:
        result = session.execute(
            delete(Design).where(or_(Design.original_key.in_(keys), Design.cutout_key.in_(keys)))
        )
        removed = int(getattr(result, "rowcount", 0) or 0)
    if removed:
        log.info("removed %d designs deleted while the backup ran", removed)
    return removed
