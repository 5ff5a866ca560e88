"""Storage fixtures: one factory per backend, so the contract suite runs against each.

To add a backend, add its name to ``BACKENDS`` and a branch to ``storage_factory``. The ``s3``
backend talks to the real SeaweedFS the session starts (tests/conftest.py), one empty bucket per
storage built, with its per-object operations on signed requests (as in production); ``s3-boto3``
is the same store on boto3 alone (how an ``S3Storage`` built without credentials works).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from stolentee.storage.backends.local import LocalStorage
from stolentee.storage.backends.memory import MemoryStorage
from stolentee.storage.base import Storage
from stolentee.storage.s3.store import MIB, S3Storage
from tests.fakes.seaweedfs import SeaweedFS

# Parts at S3's 5 MiB minimum, so the contract's larger objects exercise multipart uploads.
S3_TEST_MULTIPART_BYTES = 5 * MIB

BACKENDS = ["local", "memory", "s3", "s3-boto3"]

StorageFactory = Callable[..., Storage]


@pytest.fixture(params=BACKENDS)
def storage_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StorageFactory]:
    """Build the backend under test; keyword arguments: ``public_domain``, ``public_base_url``."""
    backend: str = request.param
    roots = iter(range(1_000_000))
    built: list[S3Storage] = []

    def factory(*, public_domain: str = "", public_base_url: str = "") -> Storage:
        if backend == "local":
            return LocalStorage(
                root=tmp_path / f"storage-{next(roots)}",
                public_domain=public_domain,
                public_base_url=public_base_url,
            )
        if backend == "memory":
            return MemoryStorage(public_domain=public_domain, public_base_url=public_base_url)
        if backend in ("s3", "s3-boto3"):
            server: SeaweedFS = request.getfixturevalue("seaweedfs")
            take_bucket: Callable[[], str] = request.getfixturevalue("s3_buckets")
            built.append(
                S3Storage(
                    client=cast(Any, server.client()),
                    bucket=take_bucket(),
                    public_domain=public_domain,
                    public_base_url=public_base_url,
                    multipart_threshold_bytes=S3_TEST_MULTIPART_BYTES,
                    multipart_chunk_bytes=S3_TEST_MULTIPART_BYTES,
                    credentials=server.credentials() if backend == "s3" else None,
                )
            )
            return built[-1]
        raise AssertionError(f"no factory for backend {backend!r}")

    yield factory
    for storage in built:
        storage.close()


@pytest.fixture
def storage(storage_factory: StorageFactory) -> Storage:
    """A fresh, empty instance of each backend in turn."""
    return storage_factory()


@pytest.fixture
def local(tmp_path: Path) -> LocalStorage:
    """A local storage rooted in ``tmp_path / "root"``."""
    return LocalStorage(root=tmp_path / "root")


# --- listing order ---------------------------------------------------------------------------


def utf8_order(key: str) -> tuple[bytes, ...]:
    """S3's listing order (AWS, R2, MinIO) and that of the local and in-memory backends."""
    return (key.encode("utf-8"),)


def segment_order(key: str) -> tuple[bytes, ...]:
    """SeaweedFS's: it lists directory by directory, so ``a/b`` comes before ``a-c``."""
    return tuple(segment.encode("utf-8") for segment in key.split("/"))


def listing_sort_key(storage: Storage) -> Callable[[str], tuple[bytes, ...]]:
    """The order ``storage.list`` returns keys in (the test S3 server is SeaweedFS)."""
    return segment_order if isinstance(storage, S3Storage) else utf8_order


def in_listing_order(storage: Storage, keys: list[str]) -> list[str]:
    return sorted(keys, key=listing_sort_key(storage))
