"""Storage fixtures: one factory per backend, so the contract suite runs against each.

To add a backend, add its name to ``BACKENDS`` and a branch to ``storage_factory`` (an ``s3``
backend would start SeaweedFS once per session and hand out a fresh bucket per test).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from stolentee.storage.base import Storage
from stolentee.storage.local import LocalStorage
from stolentee.storage.memory import MemoryStorage

BACKENDS = ["local", "memory"]

StorageFactory = Callable[..., Storage]


@pytest.fixture(params=BACKENDS)
def storage_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StorageFactory:
    """Build the backend under test; keyword arguments: ``public_domain``, ``public_base_url``."""
    backend: str = request.param
    roots = iter(range(1_000_000))

    def factory(*, public_domain: str = "", public_base_url: str = "") -> Storage:
        if backend == "local":
            return LocalStorage(
                root=tmp_path / f"storage-{next(roots)}",
                public_domain=public_domain,
                public_base_url=public_base_url,
            )
        if backend == "memory":
            return MemoryStorage(public_domain=public_domain, public_base_url=public_base_url)
        raise AssertionError(f"no factory for backend {backend!r}")

    return factory


@pytest.fixture
def storage(storage_factory: StorageFactory) -> Storage:
    """A fresh, empty instance of each backend in turn."""
    return storage_factory()


@pytest.fixture
def local(tmp_path: Path) -> LocalStorage:
    """A local storage rooted in ``tmp_path / "root"``."""
    return LocalStorage(root=tmp_path / "root")
