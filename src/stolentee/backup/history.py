"""The instance's own record of its backups (``backup_runs``): what health and metrics show.

``backup create`` adds a row once the manifest is written. The row lives in the database being
backed up, so the backup taken at that time never holds its own row; a restored instance shows
the backups made before the one it came from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from stolentee.backup.manifest import BackupManifest
from stolentee.db.engine import Database
from stolentee.db.models import BackupRun
from stolentee.errors import StolenteeError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LastBackup:
    id: str
    target: str
    finished_at: datetime

    def age_s(self, now: datetime | None = None) -> float:
        return ((now or datetime.now(UTC)) - self.finished_at).total_seconds()


def record_run(database: Database, manifest: BackupManifest, target: str) -> None:
    """Note a finished backup; a database that cannot take the row only costs a warning (the
    backup itself is complete on its target)."""
    run = BackupRun(
        id=manifest.id,
        target=target,
        started_at=datetime.fromisoformat(manifest.started_at),
        finished_at=datetime.fromisoformat(manifest.finished_at),
        objects=len(manifest.objects),
        bytes=manifest.total_bytes,
        copied_objects=manifest.copied_objects,
        copied_bytes=manifest.copied_bytes,
    )
    try:
        with database.session() as session:
            session.add(run)
    except (SQLAlchemyError, StolenteeError) as exc:
        log.warning("backup %s is complete, but could not be recorded: %s", manifest.id, exc)


def last_backup(database: Database) -> LastBackup | None:
    """The newest recorded backup, or None: none yet, an older schema without the table, or a
    database that cannot answer now (health and metrics report what they can; the database's
    own check says why)."""
    stmt = select(BackupRun).order_by(BackupRun.finished_at.desc()).limit(1)
    try:
        with database.session() as session:
            row = session.scalars(stmt).first()
    except (SQLAlchemyError, StolenteeError):
        return None
    if row is None:
        return None
    return LastBackup(id=row.id, target=row.target, finished_at=row.finished_at)
