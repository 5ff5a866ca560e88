"""One backup's manifest: what it holds, each file's sha256, written last."""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from stolentee.errors import StolenteeError

MANIFEST_FORMAT = 1
BACKUPS_PREFIX = "backups/"
OBJECTS_PREFIX = "objects/"


class BackupError(StolenteeError):
    """A backup cannot be made, read, verified or restored; the message says why."""

    code = "backup_error"
    title = "Backup failed"


def new_backup_id(now: datetime | None = None) -> str:
    """``20261207T013000.123456Z-1a2b``: sorts by start time; the suffix keeps two hosts that
    start in the same microsecond apart."""
    moment = now or datetime.now(UTC)
    return f"{moment:%Y%m%dT%H%M%S}.{moment.microsecond:06d}Z-{secrets.token_hex(2)}"


def backup_dir(backup_id: str) -> str:
    return f"{BACKUPS_PREFIX}{backup_id}/"


def manifest_key(backup_id: str) -> str:
    return f"{backup_dir(backup_id)}manifest.json"


def object_key(sha256: str) -> str:
    """Where the target keeps the bytes whose sha256 this is (shared by every backup)."""
    return f"{OBJECTS_PREFIX}{sha256[:2]}/{sha256}"


@dataclass(frozen=True, slots=True)
class ObjectEntry:
    """One stored object of the backed-up instance, by its key, and where its bytes are."""

    key: str
    size: int
    sha256: str
    content_type: str
    # The store's own entity tag when listed (S3's ETag; "" where the store has none): the next
    # backup trusts an object whose listing shows the same tag and size without reading it.
    store_etag: str = ""


@dataclass(frozen=True, slots=True)
class DatabaseDump:
    """The database file of a backup: ``sqlite3`` (a database file) or ``pgdump`` (custom)."""

    key: str
    format: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class BackupManifest:
    id: str
    started_at: str
    finished_at: str
    version: str
    schema_revision: str | None
    source: dict[str, str]
    database: DatabaseDump
    objects: list[ObjectEntry]
    # Keys designs in the snapshot named but that were deleted before they could be copied (a
    # design deleted while the backup ran): a restore removes those designs too.
    deleted_during_backup: list[str] = field(default_factory=list)
    copied_objects: int = 0
    copied_bytes: int = 0
    format: int = MANIFEST_FORMAT

    @property
    def created(self) -> datetime:
        return datetime.fromisoformat(self.started_at)

    @property
    def total_bytes(self) -> int:
        return self.database.size + sum(entry.size for entry in self.objects)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes, *, where: str) -> BackupManifest:
        try:
            raw: dict[str, Any] = json.loads(data)
            if raw.get("format") != MANIFEST_FORMAT:
                raise BackupError(
                    f"{where}: manifest format {raw.get('format')!r} is not one this version "
                    f"reads ({MANIFEST_FORMAT})"
                )
            return cls(
                **{
                    **raw,
                    "database": DatabaseDump(**raw["database"]),
                    "objects": [ObjectEntry(**entry) for entry in raw["objects"]],
                }
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise BackupError(f"{where}: the manifest is unreadable ({exc})") from None
