"""Local-disk storage: one file per object, written atomically (temp file + fsync + rename).

Layout under ``root``::

    objects/<key>               the object's bytes, at its key's path
    meta/<hh>/<sha256(key)>.json  content type, sha256, size, user metadata, and the stat
                                (inode, size, mtime) of the data file the record describes
    tmp/                        temp files being written (same file system, so renames are atomic)

Meta records are named by the hash of their key rather than ``meta/<key>.json``: the latter
collides when both ``a`` and ``a.json/b`` are stored, and overflows the 255-byte file-name limit
for a key whose last segment is already 255 bytes long.

A meta record is trusted only while the data file still has the inode, size and mtime it
records. Otherwise (a crash between the two renames, a concurrent overwrite, a file copied in by
hand) :meth:`LocalStorage.head` recomputes the sha256 and size from the data, guesses the content
type from the extension and rewrites the record.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from stolentee.errors import (
    InsufficientStorageError,
    InvalidKeyError,
    ObjectNotFoundError,
    StorageConflictError,
    StorageError,
)
from stolentee.storage.base import (
    CHUNK_BYTES,
    DEFAULT_LIST_LIMIT,
    ListPage,
    ObjectInfo,
    PagedStorage,
    check_metadata,
    guess_content_type,
    iter_chunks,
    resolve_content_type,
    resolve_range,
    validate_key,
    validate_prefix,
)

logger = logging.getLogger(__name__)

META_VERSION = 1
STALE_TEMP_AGE_S = 3600.0  # temp files older than this are leftovers of a killed writer
_RENAME_ATTEMPTS = 3  # a concurrent delete may prune the parent directory between mkdir and rename
_MISSING_ERRNOS = (errno.ENOENT, errno.ENOTDIR)
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def _os_error(what: str, exc: OSError) -> StorageError:
    """The error a client may see for a failed file operation: ``InsufficientStorageError``
    (507) on a full disk or quota, else ``StorageError``; never a path of this machine (the
    traceback in the log keeps the details)."""
    if exc.errno in _FULL_ERRNOS:
        return InsufficientStorageError(f"{what}: not enough disk space on the server")
    return StorageError(f"{what}: {exc.strerror or 'input/output error'}")


_DirEntries = list[tuple[str, bool]]  # (name, is_dir); aliased: ``list`` is a method below


@dataclass(frozen=True, slots=True)
class _DataStat:
    """The identity of one version of a data file."""

    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, result: os.stat_result) -> _DataStat:
        return cls(inode=result.st_ino, size=result.st_size, mtime_ns=result.st_mtime_ns)


@dataclass(frozen=True, slots=True)
class _Meta:
    """A parsed meta record."""

    content_type: str
    sha256: str
    size: int
    metadata: dict[str, str]
    data_stat: _DataStat

    def to_json(self, key: str) -> bytes:
        record = {
            "version": META_VERSION,
            "key": key,
            "content_type": self.content_type,
            "sha256": self.sha256,
            "size": self.size,
            "metadata": self.metadata,
            "st_ino": self.data_stat.inode,
            "st_size": self.data_stat.size,
            "st_mtime_ns": self.data_stat.mtime_ns,
        }
        return json.dumps(record, ensure_ascii=True, sort_keys=True).encode("ascii")

    @classmethod
    def from_json(cls, raw: bytes, key: str) -> _Meta | None:
        """The record in ``raw`` if it is well formed and describes ``key``, else ``None``."""
        try:
            record: Any = json.loads(raw)
            if record.get("version") != META_VERSION or record.get("key") != key:
                return None
            metadata = record["metadata"]
            if not isinstance(metadata, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
            ):
                return None
            return cls(
                content_type=str(record["content_type"]),
                sha256=str(record["sha256"]),
                size=int(record["size"]),
                metadata=dict(metadata),
                data_stat=_DataStat(
                    inode=int(record["st_ino"]),
                    size=int(record["st_size"]),
                    mtime_ns=int(record["st_mtime_ns"]),
                ),
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


def _utc_from_ns(mtime_ns: int) -> datetime:
    return datetime.fromtimestamp(mtime_ns / 1_000_000_000, tz=UTC)


def _sort_name(name: str, is_dir: bool) -> bytes:
    """Sort key of a directory entry so that a depth-first walk yields keys in UTF-8 byte order.

    Every key below directory ``d`` starts with ``d/``, so directories sort as ``name + '/'``.
    """
    encoded = name.encode("utf-8", "surrogateescape")
    return encoded + b"/" if is_dir else encoded


def _fsync_directory(path: Path) -> None:
    """Make a rename in ``path`` durable (best effort: not every platform allows this)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


class LocalStorage(PagedStorage):
    """Objects as files under ``root``; see the module docstring for the layout."""

    name = "local"

    def __init__(self, *, root: Path, public_domain: str = "", public_base_url: str = "") -> None:
        self.public_domain = public_domain
        self.public_base_url = public_base_url
        try:
            root = Path(root)
            for sub in ("objects", "meta", "tmp"):
                (root / sub).mkdir(parents=True, exist_ok=True)
            self.root = root.resolve(strict=True)
        except OSError as exc:
            raise _os_error(f"cannot create local storage at {root}", exc) from exc
        self._objects = self.root / "objects"
        self._meta = self.root / "meta"
        self._tmp = self.root / "tmp"
        self._remove_stale_temp_files()

    def __repr__(self) -> str:
        return f"LocalStorage(root={str(self.root)!r})"

    # --- the Storage contract ----------------------------------------------------------------

    def put(
        self,
        key: str,
        data: bytes | BinaryIO,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        """Stream ``data`` to a temp file while hashing it, then rename it into place."""
        path = self._object_path(key)
        content_type = resolve_content_type(key, content_type)
        user_metadata = check_metadata(metadata)
        self._check_no_conflict(key, path)
        temp, sha256, data_stat = self._write_temp(key, data)
        meta = _Meta(content_type, sha256, data_stat.size, user_metadata, data_stat)
        try:
            # Both files are written before either is renamed: once the data is in place, only
            # a rename (not a disk-full write) can still fail.
            meta_temp = self._write_meta_temp(key, meta)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        try:
            self._rename_into_place(key, temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            meta_temp.unlink(missing_ok=True)
            raise
        self._install_meta(key, meta_temp)
        return self._info(key, meta)

    def get(self, key: str) -> bytes:
        """The whole object."""
        path = self._object_path(key)
        self._stat_data(key, path)  # not found unless a regular file (never open a FIFO)
        try:
            with path.open("rb") as fh:
                return fh.read()
        except OSError as exc:
            raise self._read_error(key, exc) from exc

    def open_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes ``start``..``end`` inclusive, in chunks; errors are raised before iterating."""
        path = self._object_path(key)
        result = self._stat_data(key, path)
        first, last = resolve_range(result.st_size, start, end)
        return self._read_range(key, path, first, last)

    def head(self, key: str) -> ObjectInfo:
        """The object's information, repairing its meta record when it is missing or stale."""
        path = self._object_path(key)
        data_stat = _DataStat.of(self._stat_data(key, path))
        meta = self._read_meta(key)
        if meta is None or meta.data_stat != data_stat:
            meta = self._repair_meta(key, path)
        return self._info(key, meta)

    def check(self) -> None:
        """Raise ``StorageError`` unless the object and temp directories are writable."""
        for directory in (self._objects, self._tmp):
            if not directory.is_dir() or not os.access(directory, os.W_OK | os.X_OK):
                raise StorageError(f"local storage directory {str(directory)!r} is not writable")

    def exists(self, key: str) -> bool:
        """Whether a regular file is stored under ``key``."""
        path = self._object_path(key)
        try:
            self._stat_data(key, path)
        except ObjectNotFoundError:
            return False
        return True

    def delete(self, key: str) -> bool:
        """Remove data and meta, then prune the now-empty parent directories."""
        path = self._object_path(key)
        removed = False
        try:
            mode = path.lstat().st_mode
            if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
                path.unlink()
                removed = True
        except OSError as exc:
            if exc.errno not in _MISSING_ERRNOS:
                raise _os_error(f"cannot delete {key!r}", exc) from exc
        try:
            self._meta_path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise _os_error(f"cannot delete the metadata of {key!r}", exc) from exc
        self._prune_empty_parents(path.parent)
        return removed

    def list(
        self,
        prefix: str = "",
        *,
        start_after: str | None = None,
        limit: int = DEFAULT_LIST_LIMIT,
    ) -> ListPage:
        """Objects under ``prefix`` in UTF-8 byte order, walking only the prefix's directory."""
        validate_prefix(prefix)
        if limit < 1:
            raise ValueError("limit must be at least 1")
        after = start_after.encode("utf-8", "surrogateescape") if start_after else None
        objects: list[ObjectInfo] = []
        for key in self._walk_keys(prefix, after):
            if len(objects) == limit:
                return ListPage(objects=objects, next_start_after=objects[-1].key)
            try:
                objects.append(self.head(key))
            except (ObjectNotFoundError, InvalidKeyError):
                continue  # deleted meanwhile, or a symlink leaving the root
        return ListPage(objects=objects, next_start_after=None)

    # --- paths -------------------------------------------------------------------------------

    def _object_path(self, key: str) -> Path:
        """The data path of ``key``, refused when it resolves (via symlinks) outside the root."""
        validate_key(key)
        path = self._objects.joinpath(*key.split("/"))
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
            raise InvalidKeyError(f"storage key {key!r} cannot be resolved") from exc
        if resolved == self._objects or not resolved.is_relative_to(self._objects):
            raise InvalidKeyError(f"storage key {key!r} resolves outside the storage root")
        return path

    def _meta_path(self, key: str) -> Path:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        return self._meta / digest[:2] / f"{digest}.json"

    def _check_no_conflict(self, key: str, path: Path) -> None:
        """Refuse ``a/b`` when file ``a`` exists, and ``a`` when directory ``a/`` exists."""
        if path.is_dir():
            raise StorageConflictError(f"{key!r} is a prefix of other keys (a directory on disk)")
        parent = path.parent
        while parent != self._objects:
            if parent.exists() and not parent.is_dir():
                part = parent.relative_to(self._objects).as_posix()
                raise StorageConflictError(f"{key!r} cannot be stored below the object {part!r}")
            parent = parent.parent

    # --- writing -----------------------------------------------------------------------------

    def _write_temp(self, key: str, data: bytes | BinaryIO) -> tuple[Path, str, _DataStat]:
        """Write ``data`` to a new temp file, fsynced; its path, sha256 and stat."""
        try:
            fd, name = tempfile.mkstemp(dir=self._tmp, prefix="put-", suffix=".part")
        except OSError as exc:
            raise _os_error(f"cannot create a temp file for {key!r}", exc) from exc
        temp = Path(name)
        try:
            with os.fdopen(fd, "wb") as fh:
                os.fchmod(fh.fileno(), 0o644)
                hasher = hashlib.sha256()
                for chunk in iter_chunks(data):
                    hasher.update(chunk)
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
                data_stat = _DataStat.of(os.fstat(fh.fileno()))
        except BaseException as exc:
            temp.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise _os_error(f"cannot write {key!r}", exc) from exc
            raise
        return temp, hasher.hexdigest(), data_stat

    def _rename_into_place(self, key: str, temp: Path, path: Path) -> None:
        """``os.replace`` the temp file onto ``path``, creating parent directories as needed."""
        for attempt in range(_RENAME_ATTEMPTS):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                os.replace(temp, path)
            except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
                raise StorageConflictError(
                    f"{key!r} conflicts with another key (a file/directory clash on disk)"
                ) from exc
            except FileNotFoundError as exc:
                if attempt + 1 == _RENAME_ATTEMPTS:
                    msg = f"cannot store {key!r}: its directory keeps vanishing"
                    raise StorageError(msg) from exc
                continue  # a concurrent delete pruned the parent directory; recreate it
            except OSError as exc:
                raise _os_error(f"cannot store {key!r}", exc) from exc
            _fsync_directory(path.parent)
            return

    def _write_meta(self, key: str, meta: _Meta) -> None:
        """Write the meta record atomically, like the data."""
        self._install_meta(key, self._write_meta_temp(key, meta))

    def _write_meta_temp(self, key: str, meta: _Meta) -> Path:
        """The meta record in a new temp file, fsynced."""
        temp: Path | None = None
        try:
            fd, name = tempfile.mkstemp(dir=self._tmp, prefix="meta-", suffix=".part")
            temp = Path(name)
            with os.fdopen(fd, "wb") as fh:
                fh.write(meta.to_json(key))
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException as exc:
            if temp is not None:
                temp.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise _os_error(f"cannot write the metadata of {key!r}", exc) from exc
            raise
        return temp

    def _install_meta(self, key: str, temp: Path) -> None:
        """Rename a meta temp file into place (removing it if that fails)."""
        path = self._meta_path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temp, path)
        except BaseException as exc:
            temp.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise _os_error(f"cannot store the metadata of {key!r}", exc) from exc
            raise

    # --- reading -----------------------------------------------------------------------------

    def _stat_data(self, key: str, path: Path) -> os.stat_result:
        """The stat of the regular data file of ``key``; ``ObjectNotFoundError`` otherwise."""
        try:
            result = path.stat()
        except OSError as exc:
            raise self._read_error(key, exc) from exc
        if not stat.S_ISREG(result.st_mode):
            raise ObjectNotFoundError(f"no object under key {key!r}")
        return result

    def _read_error(self, key: str, exc: OSError) -> ObjectNotFoundError | StorageError:
        if exc.errno in _MISSING_ERRNOS or isinstance(exc, IsADirectoryError):
            return ObjectNotFoundError(f"no object under key {key!r}")
        return StorageError(f"cannot read {key!r}: {exc.strerror}")

    def _read_range(self, key: str, path: Path, first: int, last: int) -> Iterator[bytes]:
        remaining = last - first + 1
        if remaining <= 0:
            return
        try:
            with path.open("rb") as fh:
                fh.seek(first)
                while remaining > 0:
                    chunk = fh.read(min(CHUNK_BYTES, remaining))
                    if not chunk:
                        raise StorageError(f"{key!r} became shorter while it was being read")
                    remaining -= len(chunk)
                    yield chunk
        except OSError as exc:
            raise self._read_error(key, exc) from exc

    def _read_meta(self, key: str) -> _Meta | None:
        try:
            raw = self._meta_path(key).read_bytes()
        except OSError:
            return None
        return _Meta.from_json(raw, key)

    def _repair_meta(self, key: str, path: Path) -> _Meta:
        """Rebuild the meta record of ``key`` from its data file and store it (best effort)."""
        hasher = hashlib.sha256()
        try:
            with path.open("rb") as fh:
                data_stat = _DataStat.of(os.fstat(fh.fileno()))
                while chunk := fh.read(CHUNK_BYTES):
                    hasher.update(chunk)
        except OSError as exc:
            raise self._read_error(key, exc) from exc
        meta = _Meta(guess_content_type(key), hasher.hexdigest(), data_stat.size, {}, data_stat)
        try:
            self._write_meta(key, meta)
        except StorageError:
            logger.warning("could not rewrite the metadata of %r", key, exc_info=True)
        else:
            logger.info("rebuilt the missing or stale metadata of %r", key)
        return meta

    def _info(self, key: str, meta: _Meta) -> ObjectInfo:
        return ObjectInfo(
            key=key,
            size=meta.size,
            content_type=meta.content_type,
            sha256=meta.sha256,
            last_modified=_utc_from_ns(meta.data_stat.mtime_ns),
            metadata=dict(meta.metadata),
        )

    # --- listing -----------------------------------------------------------------------------

    def _walk_keys(self, prefix: str, after: bytes | None) -> Iterator[str]:
        """Keys starting with ``prefix`` (and after ``after``), lazily, in UTF-8 byte order."""
        directory, _, name_prefix = prefix.rpartition("/")
        base = f"{directory}/" if directory else ""
        start = self._objects.joinpath(*directory.split("/")) if directory else self._objects
        if not start.resolve().is_relative_to(self._objects):
            return  # the prefix's directory is a symlink leaving the root
        yield from self._walk_dir(start, base, name_prefix, after)

    def _walk_dir(
        self, directory: Path, base: str, name_prefix: str, after: bytes | None
    ) -> Iterator[str]:
        for name, is_dir in self._sorted_entries(directory, name_prefix):
            key = base + name
            encoded = key.encode("utf-8", "surrogateescape")
            if is_dir:
                below = encoded + b"/"
                if after is not None and after > below and not after.startswith(below):
                    continue  # every key in this directory sorts before ``after``
                yield from self._walk_dir(directory / name, key + "/", "", after)
            elif after is None or encoded > after:
                try:
                    yield validate_key(key)
                except InvalidKeyError:
                    continue  # a file whose name no key can have (copied in by hand)

    def _sorted_entries(self, directory: Path, name_prefix: str) -> _DirEntries:
        """``(name, is_dir)`` of the regular files and directories (symlinks skipped)."""
        entries: _DirEntries = []
        try:
            with os.scandir(directory) as scan:
                for entry in scan:
                    if not entry.name.startswith(name_prefix):
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        entries.append((entry.name, True))
                    elif entry.is_file(follow_symlinks=False):
                        entries.append((entry.name, False))
        except OSError as exc:
            if exc.errno in _MISSING_ERRNOS:
                return []
            raise _os_error(f"cannot list {directory.name!r}", exc) from exc
        entries.sort(key=lambda entry: _sort_name(*entry))
        return entries

    # --- housekeeping ------------------------------------------------------------------------

    def _prune_empty_parents(self, directory: Path) -> None:
        """Remove ``directory`` and its ancestors while they are empty, stopping at the root."""
        while directory != self._objects and directory.is_relative_to(self._objects):
            try:
                directory.rmdir()
            except OSError:
                return  # not empty (or already gone, or not a directory): stop
            directory = directory.parent

    def _remove_stale_temp_files(self) -> None:
        """Delete temp files a killed writer left behind (old enough not to be in use)."""
        cutoff = time.time() - STALE_TEMP_AGE_S
        try:
            with os.scandir(self._tmp) as scan:
                for entry in scan:
                    with contextlib.suppress(OSError):
                        if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                            os.unlink(entry.path)
        except OSError:
            logger.warning("could not clean up %s", self._tmp, exc_info=True)
