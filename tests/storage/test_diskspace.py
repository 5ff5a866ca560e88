"""The free-space floor and the disk reserve (stolentee.storage.diskspace) on this disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from stolentee.errors import InsufficientStorageError
from stolentee.storage.diskspace import RESERVE_FILE_NAME, DiskSpace


def test_a_floor_above_the_free_space_refuses_new_writes(tmp_path: Path) -> None:
    roomy = DiskSpace({"data": tmp_path}, min_free_bytes=0)
    assert roomy.low() is None
    roomy.refuse_if_low()
    (volume,) = roomy.figures()
    assert 0 < volume.free_bytes <= volume.total_bytes
    cramped = DiskSpace({"data": tmp_path / "not-yet"}, min_free_bytes=volume.total_bytes + 1)
    low = cramped.low()
    assert low is not None and low.name == "data"  # measured at the nearest existing parent
    with pytest.raises(InsufficientStorageError) as refused:
        cramped.refuse_if_low()
    assert refused.value.status_code == 507 and str(tmp_path) not in refused.value.detail


def test_paths_on_one_filesystem_are_reported_once(tmp_path: Path) -> None:
    (tmp_path / "storage").mkdir()
    disk = DiskSpace({"data": tmp_path, "storage": tmp_path / "storage"}, min_free_bytes=0)
    assert [volume.name for volume in disk.figures()] == ["data"]


def test_the_reserve_is_allocated_released_and_taken_back(tmp_path: Path) -> None:
    disk = DiskSpace({"data": tmp_path}, min_free_bytes=0, reserve_dir=tmp_path)
    reserve = tmp_path / RESERVE_FILE_NAME
    assert disk.keep_reserve() and reserve.stat().st_size == disk.reserve_bytes
    assert reserve.stat().st_blocks * 512 >= disk.reserve_bytes  # allocated, not sparse
    assert disk.release_reserve() and not reserve.exists()
    assert not disk.release_reserve()  # nothing left to give up
    assert disk.keep_reserve() and reserve.exists()


def test_no_reserve_is_taken_when_it_would_cross_the_floor(tmp_path: Path) -> None:
    (volume,) = DiskSpace({"data": tmp_path}, min_free_bytes=0).figures()
    disk = DiskSpace({"data": tmp_path}, min_free_bytes=volume.free_bytes, reserve_dir=tmp_path)
    assert not disk.keep_reserve() and not (tmp_path / RESERVE_FILE_NAME).exists()
