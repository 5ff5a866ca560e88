"""What only the in-memory backend promises beyond the contract."""

from __future__ import annotations

import pytest

from stolentee.errors import StorageConflictError
from stolentee.storage.backends.memory import MemoryStorage
from stolentee.storage.base import Storage


def test_is_a_storage() -> None:
    assert isinstance(MemoryStorage(), Storage)
    assert MemoryStorage().name == "memory"


def test_refuses_what_the_local_backend_cannot_hold() -> None:
    storage = MemoryStorage()
    storage.put("uploads/a/b.png", b"b")
    with pytest.raises(StorageConflictError):
        storage.put("uploads/a", b"a")
    storage.put("uploads/c", b"c")
    with pytest.raises(StorageConflictError):
        storage.put("uploads/c/d.png", b"d")


def test_a_directory_disappears_with_its_last_key() -> None:
    storage = MemoryStorage()
    storage.put("uploads/a/b.png", b"b")
    storage.put("uploads/a/c.png", b"c")
    storage.delete("uploads/a/b.png")
    with pytest.raises(StorageConflictError):
        storage.put("uploads/a", b"a")
    storage.delete("uploads/a/c.png")
    storage.put("uploads/a", b"a")
    assert storage.get("uploads/a") == b"a"
