"""What only the local-disk backend has: files, temp files, meta records, symlinks, directories."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import time
from pathlib import Path

import pytest

from stolentee.errors import (
    InsufficientStorageError,
    InvalidKeyError,
    ObjectNotFoundError,
    StorageConflictError,
    StorageError,
)
from stolentee.storage.backends.local import STALE_TEMP_AGE_S, LocalStorage


def _temp_files(storage: LocalStorage) -> list[Path]:
    return sorted((storage.root / "tmp").iterdir())


def _meta_files(storage: LocalStorage) -> list[Path]:
    return sorted((storage.root / "meta").rglob("*.json"))


def _data_path(storage: LocalStorage, key: str) -> Path:
    return storage.root / "objects" / key


class FailingReader(io.RawIOBase):
    """A stream that breaks after its first chunk, like a client that disconnects mid-upload."""

    def __init__(self, exc: BaseException) -> None:
        self._exc = exc
        self._calls = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self._calls += 1
        if self._calls > 1:
            raise self._exc
        return b"partial data"


# --- layout and atomic writes ----------------------------------------------------------------


def test_layout_data_meta_and_tmp(local: LocalStorage) -> None:
    local.put("uploads/2026/a.png", b"png", metadata={"owner": "7"})

    assert _data_path(local, "uploads/2026/a.png").read_bytes() == b"png"
    [meta_file] = _meta_files(local)
    record = json.loads(meta_file.read_text())
    assert record["key"] == "uploads/2026/a.png"
    assert record["sha256"] == hashlib.sha256(b"png").hexdigest()
    assert record["size"] == 3
    assert record["content_type"] == "image/png"
    assert record["metadata"] == {"owner": "7"}
    stat = _data_path(local, "uploads/2026/a.png").stat()
    assert (record["st_ino"], record["st_size"], record["st_mtime_ns"]) == (
        stat.st_ino,
        stat.st_size,
        stat.st_mtime_ns,
    )
    assert _temp_files(local) == []


def test_last_modified_is_the_data_file_mtime(local: LocalStorage) -> None:
    info = local.put("uploads/t.png", b"t")
    mtime_ns = _data_path(local, "uploads/t.png").stat().st_mtime_ns
    assert info.last_modified.timestamp() == pytest.approx(mtime_ns / 1e9, abs=1e-6)
    assert info.last_modified.utcoffset() is not None


def test_successful_writes_leave_no_temp_files(local: LocalStorage) -> None:
    local.put("uploads/a.bin", b"a" * 1000)
    local.put("uploads/b.bin", io.BytesIO(b"b" * 300_000))
    local.put("uploads/a.bin", b"overwritten")
    assert _temp_files(local) == []


@pytest.mark.parametrize("exc", [OSError(errno.EIO, "I/O error"), ValueError("client went away")])
def test_a_failed_write_keeps_the_old_object_and_no_temp_file(
    local: LocalStorage, exc: Exception
) -> None:
    local.put("uploads/keep.bin", b"old")

    with pytest.raises((StorageError, ValueError)):
        local.put("uploads/keep.bin", FailingReader(exc))  # type: ignore[arg-type]

    assert local.get("uploads/keep.bin") == b"old"
    assert local.head("uploads/keep.bin").sha256 == hashlib.sha256(b"old").hexdigest()
    assert _temp_files(local) == []


def test_a_failed_first_write_creates_nothing(local: LocalStorage) -> None:
    with pytest.raises(StorageError):
        local.put("uploads/new/x.bin", FailingReader(OSError(errno.EIO, "I/O error")))  # type: ignore[arg-type]
    assert not local.exists("uploads/new/x.bin")
    assert not (local.root / "objects" / "uploads").exists()
    assert _temp_files(local) == []


def test_disk_full_is_insufficient_storage(
    local: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("stolentee.storage.backends.local.os.fsync", no_space)

    with pytest.raises(InsufficientStorageError, match="not enough disk space") as caught:
        local.put("uploads/full.bin", b"x" * 10)

    assert caught.value.status_code == 507 and isinstance(caught.value, StorageError)
    assert str(local.root) not in caught.value.detail
    monkeypatch.undo()
    assert _temp_files(local) == []
    assert not local.exists("uploads/full.bin")


def test_failed_rename_is_a_storage_error(
    local: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(src: object, dst: object) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr("stolentee.storage.backends.local.os.replace", denied)

    with pytest.raises(StorageError, match="Permission denied"):
        local.put("uploads/denied.bin", b"x")
    monkeypatch.undo()
    assert _temp_files(local) == []


def test_disk_full_while_writing_meta_keeps_the_old_object(
    local: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    local.put("uploads/keep.png", b"old", metadata={"v": "1"})
    real_fsync = os.fsync
    calls: list[int] = []

    def full_on_second_file(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:  # the data temp file fits, its meta record does not
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr("stolentee.storage.backends.local.os.fsync", full_on_second_file)
    with pytest.raises(StorageError, match="metadata"):
        local.put("uploads/keep.png", b"new")
    monkeypatch.undo()

    assert local.get("uploads/keep.png") == b"old"
    assert local.head("uploads/keep.png").metadata == {"v": "1"}
    assert _temp_files(local) == []


def test_failed_meta_rename_after_the_data_is_self_repaired(
    local: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace
    calls: list[object] = []

    def fail_second(src: str, dst: str) -> None:
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_replace(src, dst)

    monkeypatch.setattr("stolentee.storage.backends.local.os.replace", fail_second)
    with pytest.raises(StorageError, match="metadata"):
        local.put("uploads/half.png", b"data landed")
    monkeypatch.undo()

    assert _temp_files(local) == []
    info = local.head("uploads/half.png")
    assert info.sha256 == hashlib.sha256(b"data landed").hexdigest()
    assert info.content_type == "image/png"


def test_unreadable_root_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StorageError, match="cannot create local storage"):
        LocalStorage(root=blocker / "root")


def test_stale_temp_files_are_removed_on_start(tmp_path: Path) -> None:
    LocalStorage(root=tmp_path / "root")
    stale = tmp_path / "root" / "tmp" / "put-stale.part"
    fresh = tmp_path / "root" / "tmp" / "put-fresh.part"
    stale.write_bytes(b"left by a killed writer")
    fresh.write_bytes(b"being written right now")
    old = time.time() - STALE_TEMP_AGE_S - 60
    os.utime(stale, (old, old))

    LocalStorage(root=tmp_path / "root")

    assert not stale.exists()
    assert fresh.exists()


# --- self-repair of meta records -------------------------------------------------------------


def test_head_repairs_a_missing_meta_record(local: LocalStorage) -> None:
    """A crash after the data rename and before the meta rename."""
    data = b"<svg/>"
    local.put("uploads/crash.svg", data, content_type="image/svg+xml", metadata={"a": "1"})
    for meta_file in _meta_files(local):
        meta_file.unlink()

    info = local.head("uploads/crash.svg")

    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.size == len(data)
    assert info.content_type == "image/svg+xml"  # guessed from the extension
    assert info.metadata == {}
    assert len(_meta_files(local)) == 1  # rewritten
    assert local.head("uploads/crash.svg") == info


def test_head_repairs_a_stale_meta_record(local: LocalStorage, tmp_path: Path) -> None:
    """A crash during an overwrite: new data in place, the old version's meta beside it."""
    local.put("uploads/over.png", b"old version", metadata={"v": "1"})
    new_data = b"the new version, longer"
    replacement = tmp_path / "replacement"
    replacement.write_bytes(new_data)
    os.replace(replacement, _data_path(local, "uploads/over.png"))

    info = local.head("uploads/over.png")

    assert info.sha256 == hashlib.sha256(new_data).hexdigest()
    assert info.size == len(new_data)
    assert info.content_type == "image/png"
    assert info.metadata == {}
    assert local.get("uploads/over.png") == new_data


def test_head_repairs_a_same_size_rewrite_in_place(local: LocalStorage) -> None:
    local.put("uploads/same.bin", b"aaaa")
    path = _data_path(local, "uploads/same.bin")
    path.write_bytes(b"bbbb")
    later = path.stat().st_mtime_ns + 5_000_000_000
    os.utime(path, ns=(later, later))
    assert local.head("uploads/same.bin").sha256 == hashlib.sha256(b"bbbb").hexdigest()


def test_head_repairs_a_corrupt_meta_record(local: LocalStorage) -> None:
    local.put("uploads/corrupt.txt", b"text")
    [meta_file] = _meta_files(local)
    meta_file.write_text("{not json")
    info = local.head("uploads/corrupt.txt")
    assert info.sha256 == hashlib.sha256(b"text").hexdigest()
    assert info.content_type == "text/plain"
    assert json.loads(meta_file.read_text())["sha256"] == info.sha256


def test_files_copied_in_by_hand_are_served_and_listed(local: LocalStorage) -> None:
    path = _data_path(local, "assets/by-hand/photo.jpg")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"jpeg bytes")

    assert local.exists("assets/by-hand/photo.jpg")
    [info] = local.list("assets/").objects
    assert info.key == "assets/by-hand/photo.jpg"
    assert info.content_type == "image/jpeg"
    assert info.sha256 == hashlib.sha256(b"jpeg bytes").hexdigest()
    assert local.get("assets/by-hand/photo.jpg") == b"jpeg bytes"


def test_head_still_answers_when_meta_cannot_be_rewritten(
    local: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    local.put("uploads/ro.txt", b"read-only")
    for meta_file in _meta_files(local):
        meta_file.unlink()

    def read_only(*args: object, **kwargs: object) -> None:
        raise StorageError("read-only file system")

    monkeypatch.setattr(local, "_write_meta", read_only)
    assert local.head("uploads/ro.txt").sha256 == hashlib.sha256(b"read-only").hexdigest()


def test_list_skips_names_no_key_can_have(local: LocalStorage) -> None:
    local.put("uploads/good.png", b"g")
    (local.root / "objects" / "uploads" / "bad\\name.png").write_bytes(b"b")
    (local.root / "objects" / "uploads" / "ctrl\x01.png").write_bytes(b"c")
    assert [info.key for info in local.list().objects] == ["uploads/good.png"]


def test_longest_segment_fits_beside_its_meta_record(local: LocalStorage) -> None:
    key = "uploads/" + "x" * 251 + ".png"  # a 255-byte file name
    local.put(key, b"long name")
    assert local.head(key).size == 9


def test_keys_that_would_clash_as_meta_paths(local: LocalStorage) -> None:
    """``a`` and ``a.json/b``: meta records named after the key would collide."""
    local.put("uploads/a", b"a")
    local.put("uploads/a.json/b", b"b")
    assert local.get("uploads/a") == b"a"
    assert local.get("uploads/a.json/b") == b"b"
    assert local.head("uploads/a").size == 1


# --- conflicts between keys and directories --------------------------------------------------


def test_key_over_an_existing_directory_conflicts(local: LocalStorage) -> None:
    local.put("uploads/a/b.png", b"b")
    with pytest.raises(StorageConflictError) as caught:
        local.put("uploads/a", b"a")
    assert caught.value.status_code == 409
    assert local.get("uploads/a/b.png") == b"b"
    assert _temp_files(local) == []


@pytest.mark.parametrize("key", ["uploads/a/b.png", "uploads/a/b/c.png"])
def test_key_below_an_existing_object_conflicts(local: LocalStorage, key: str) -> None:
    local.put("uploads/a", b"a")
    with pytest.raises(StorageConflictError):
        local.put(key, b"b")
    assert local.get("uploads/a") == b"a"
    with pytest.raises(ObjectNotFoundError):
        local.get(key)
    assert local.exists(key) is False
    assert local.delete(key) is False
    assert _temp_files(local) == []


# --- deletes ---------------------------------------------------------------------------------


def test_delete_prunes_empty_directories_but_not_the_root(local: LocalStorage) -> None:
    local.put("uploads/2026/11/x.png", b"x")
    local.put("uploads/2026/12/y.png", b"y")
    objects = local.root / "objects"

    assert local.delete("uploads/2026/11/x.png")
    assert not (objects / "uploads" / "2026" / "11").exists()
    assert (objects / "uploads" / "2026" / "12").is_dir()

    assert local.delete("uploads/2026/12/y.png")
    assert not (objects / "uploads").exists()
    assert objects.is_dir()
    assert _meta_files(local) == []


def test_delete_removes_an_orphan_meta_record(local: LocalStorage) -> None:
    local.put("uploads/o.png", b"o")
    _data_path(local, "uploads/o.png").unlink()
    assert local.delete("uploads/o.png") is False
    assert _meta_files(local) == []


# --- never outside the root ------------------------------------------------------------------


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file outside the storage root that must never be read."""
    path = tmp_path / "outside" / "secret.txt"
    path.parent.mkdir()
    path.write_bytes(b"TOP SECRET")
    return path


def test_symlinked_file_leaving_the_root_is_refused(local: LocalStorage, secret: Path) -> None:
    link = _data_path(local, "uploads/leak.txt")
    link.parent.mkdir(parents=True)
    link.symlink_to(secret)

    for call in (local.get, local.head, local.exists, local.delete):
        with pytest.raises(InvalidKeyError, match="outside the storage root"):
            call("uploads/leak.txt")
    with pytest.raises(InvalidKeyError):
        b"".join(local.open_range("uploads/leak.txt"))
    with pytest.raises(InvalidKeyError):
        local.put("uploads/leak.txt", b"overwrite")
    assert local.list().objects == []
    assert secret.read_bytes() == b"TOP SECRET"


def test_symlinked_directory_leaving_the_root_is_refused(local: LocalStorage, secret: Path) -> None:
    link = _data_path(local, "uploads/dir")
    link.parent.mkdir(parents=True)
    link.symlink_to(secret.parent, target_is_directory=True)

    with pytest.raises(InvalidKeyError):
        local.get("uploads/dir/secret.txt")
    with pytest.raises(InvalidKeyError):
        local.put("uploads/dir/planted.txt", b"x")
    assert local.list("uploads/dir/").objects == []
    assert local.list().objects == []
    assert sorted(p.name for p in secret.parent.iterdir()) == ["secret.txt"]


def test_symlink_loop_is_refused(local: LocalStorage) -> None:
    loop = _data_path(local, "uploads/loop")
    loop.parent.mkdir(parents=True)
    loop.symlink_to(loop)
    with pytest.raises((InvalidKeyError, ObjectNotFoundError)):
        local.get("uploads/loop")


def test_symlink_inside_the_root_is_followed(local: LocalStorage) -> None:
    local.put("assets/real.png", b"real")
    _data_path(local, "assets/alias.png").symlink_to(_data_path(local, "assets/real.png"))
    assert local.get("assets/alias.png") == b"real"
    assert local.delete("assets/alias.png")
    assert local.get("assets/real.png") == b"real"


def test_symlinked_root_is_fine(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    storage = LocalStorage(root=tmp_path / "link")
    storage.put("uploads/x.png", b"x")
    assert storage.get("uploads/x.png") == b"x"
    assert (tmp_path / "real" / "objects" / "uploads" / "x.png").exists()
