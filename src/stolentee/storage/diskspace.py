"""Free disk space where this process writes: a floor for new writes, and a reserve for deletes.

Two guarantees for a shop whose volume fills up (a Railway volume, a VM disk):

* **A floor.** Below ``STOLENTEE_MIN_FREE_DISK_MB`` free on any watched filesystem (the data
  directory: SQLite database, queue file, local storage), new uploads are refused with 507
  ``insufficient_storage``, ``/readyz`` answers 503 and ``/health/detailed`` says ``unhealthy``,
  so the service itself never fills its disk to the last byte, and a load balancer sends traffic
  elsewhere.
* **A reserve for deleting.** Deleting a design must work on a full disk (it is how an owner
  frees space through the API). Removing files frees space; the database's DELETE, though,
  writes to SQLite's write-ahead log before it frees anything. So :class:`DiskSpace` keeps a
  reserve file (:data:`RESERVE_BYTES`, blocks really allocated) in the data directory: when a
  delete meets a full disk, the reserve is given up and the delete is tried once more (a design
  row with its index entries is a few pages of log, far below the reserve), and the reserve is
  taken back as soon as there is room again (after the delete removed the design's files, or on
  the next health check).

``figures()`` is one ``statvfs`` per filesystem (watched paths on the same device are reported
once): cheap enough to ask on every upload.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from stolentee.config import Settings
from stolentee.errors import InsufficientStorageError

log = logging.getLogger(__name__)

RESERVE_FILE_NAME = ".disk-reserve"
RESERVE_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class VolumeFigures:
    """One watched filesystem: its label (what lives there), free and total bytes."""

    name: str
    free_bytes: int
    total_bytes: int
    low: bool  # below the floor

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "freeMb": round(self.free_bytes / 2**20, 1),
            "totalMb": round(self.total_bytes / 2**20, 1),
            "low": self.low,
        }


class DiskSpace:
    """Watches free space on the filesystems of ``paths`` (label -> path); thread-safe."""

    @classmethod
    def from_settings(cls, settings: Settings) -> DiskSpace:
        """The watch of the filesystems a process writes to: the data directory (SQLite
        database, queue file, the disk reserve) and local storage when that is the backend."""
        paths = {"data": settings.service.data_dir}
        if settings.storage.backend == "local":
            paths["storage"] = settings.storage_dir
        return cls(
            paths,
            min_free_bytes=settings.service.min_free_disk_mb * 2**20,
            reserve_dir=settings.service.data_dir,
        )

    def __init__(
        self,
        paths: Mapping[str, Path],
        *,
        min_free_bytes: int,
        reserve_dir: Path | None = None,
        reserve_bytes: int = RESERVE_BYTES,
    ) -> None:
        self.paths = dict(paths)
        self.min_free_bytes = max(0, min_free_bytes)
        self.reserve_path = None if reserve_dir is None else reserve_dir / RESERVE_FILE_NAME
        self.reserve_bytes = reserve_bytes
        self._lock = threading.Lock()

    # --- the floor ------------------------------------------------------------------------------

    def figures(self) -> list[VolumeFigures]:
        """Free and total bytes per watched filesystem (a path that does not exist yet is
        measured at its nearest existing parent)."""
        seen: set[int] = set()
        out: list[VolumeFigures] = []
        for name, path in self.paths.items():
            existing = _existing(path)
            device = existing.stat().st_dev
            if device in seen:
                continue
            seen.add(device)
            stats = os.statvfs(existing)
            free = stats.f_bavail * stats.f_frsize
            out.append(
                VolumeFigures(
                    name=name,
                    free_bytes=free,
                    total_bytes=stats.f_blocks * stats.f_frsize,
                    low=free < self.min_free_bytes,
                )
            )
        return out

    def low(self) -> VolumeFigures | None:
        """The first watched filesystem below the floor, or ``None``."""
        return next((volume for volume in self.figures() if volume.low), None)

    def refuse_if_low(self) -> None:
        """Raise ``InsufficientStorageError`` (507) when a filesystem is below the floor."""
        volume = self.low()
        if volume is not None:
            raise InsufficientStorageError(
                "the server is low on disk space and takes no new uploads for now; try again later"
            )

    # --- the reserve ----------------------------------------------------------------------------

    def keep_reserve(self) -> bool:
        """Create the reserve file if it is missing and there is room for it (above the floor
        afterwards); ``True`` when it is in place."""
        path = self.reserve_path
        if path is None:
            return False
        with self._lock:
            try:
                if path.exists() and path.stat().st_size >= self.reserve_bytes:
                    return True
                stats = os.statvfs(_existing(path.parent))
                if stats.f_bavail * stats.f_frsize < self.reserve_bytes + self.min_free_bytes:
                    return False
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
                try:
                    os.posix_fallocate(fd, 0, self.reserve_bytes)  # blocks allocated, not sparse
                finally:
                    os.close(fd)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    path.unlink()
                log.info("disk reserve not in place: %s", exc.strerror or exc)
                return False
        return True

    def release_reserve(self) -> bool:
        """Give up the reserve file (a delete met a full disk); ``True`` if space was freed."""
        path = self.reserve_path
        if path is None:
            return False
        with self._lock:
            try:
                path.unlink()
            except FileNotFoundError:
                return False
            except OSError as exc:
                log.warning("cannot release the disk reserve: %s", exc.strerror or exc)
                return False
        log.warning("disk full: released the %d MiB disk reserve", self.reserve_bytes // 2**20)
        return True


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing parent."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")
