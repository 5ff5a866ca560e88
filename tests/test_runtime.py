"""The composition root: each role builds what it uses, the same way, and releases all of it."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest

from stolentee.db.engine import Database
from stolentee.errors import StorageUnavailableError
from stolentee.keys.ratelimit import MegapixelRateLimiter, RedisMegapixelRateLimiter
from stolentee.runtime import Role, Runtime, build_runtime

from .conftest import SettingsFactory

# What each role must have built (True) or must not have built (False).
PARTS: dict[str, Callable[[Runtime], object]] = {
    "database": lambda runtime: runtime.database,
    "keys": lambda runtime: runtime.keys,
    "metrics": lambda runtime: runtime.metrics,
    "engine": lambda runtime: runtime.engine,
    "providers": lambda runtime: runtime.providers,
    "storage": lambda runtime: runtime.storage,
    "designs": lambda runtime: runtime.designs,
    "queue": lambda runtime: runtime.queue,
    "callbacks": lambda runtime: runtime.callbacks,
    "rate_limiter": lambda runtime: runtime.rate_limiter,
    "disk": lambda runtime: runtime.disk,
}
BUILT: dict[Role, set[str]] = {
    "api": set(PARTS),
    "removal": {"database", "keys", "metrics", "engine", "providers", "rate_limiter"},
    "worker": set(PARTS) - {"keys", "rate_limiter"},
    "admin": {"database", "keys"},
    "maintenance": {"database", "storage", "designs", "queue", "callbacks"},
}


@pytest.mark.parametrize("role", list(BUILT))
def test_each_role_builds_only_what_it_uses(make_settings: SettingsFactory, role: Role) -> None:
    settings = make_settings(queue={"run_worker": False})
    with build_runtime(settings, role) as runtime:
        built = set()
        refusals: list[str] = []
        for name, part in PARTS.items():
            try:
                part(runtime)
            except RuntimeError as exc:
                refusals.append(str(exc))
            else:
                built.add(name)
        assert built == BUILT[role]
        assert all(f"the {role!r} runtime does not build" in text for text in refusals)
        assert (runtime.worker is not None) == (role == "worker")
        assert runtime.has_storage == ("storage" in BUILT[role])
        assert runtime.has_queue == ("queue" in BUILT[role])


def test_the_api_runs_an_in_process_worker_when_asked(make_settings: SettingsFactory) -> None:
    with build_runtime(make_settings(), "api", run_worker=True, worker_concurrency=3) as runtime:
        assert runtime.worker is not None and runtime.worker.concurrency == 3


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _unreachable_s3(make_settings: SettingsFactory) -> dict[str, object]:
    return {
        "backend": "s3",
        "s3_endpoint": f"http://127.0.0.1:{_closed_port()}",
        "s3_bucket_name": "designs",
        "s3_access_key_id": "key",
        "s3_secret_access_key": "secret",
        "s3_connect_timeout_s": 0.5,
        "s3_max_attempts": 1,
    }


def test_a_worker_checks_its_storage_at_start_and_releases_what_it_built(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    disposed: list[Database] = []
    dispose = Database.dispose

    def recording_dispose(self: Database) -> None:
        disposed.append(self)
        dispose(self)

    monkeypatch.setattr(Database, "dispose", recording_dispose)
    settings = make_settings(storage=_unreachable_s3(make_settings))
    with pytest.raises(StorageUnavailableError):
        build_runtime(settings, "worker")
    assert len(disposed) == 1  # the database it had opened is closed again


def test_the_api_starts_with_its_storage_down(make_settings: SettingsFactory) -> None:
    """The HTTP role reports storage problems on /readyz instead of refusing to start."""
    settings = make_settings(storage=_unreachable_s3(make_settings), queue={"run_worker": False})
    with build_runtime(settings, "api") as runtime, pytest.raises(StorageUnavailableError):
        runtime.storage.check()


@pytest.mark.parametrize("role", ["api", "worker"])
def test_every_role_that_builds_s3_counts_its_calls(
    make_settings: SettingsFactory,
    s3_storage_settings: Callable[..., dict[str, Any]],
    s3_buckets: Callable[[], str],
    role: Role,
) -> None:
    storage = {"backend": "s3", **s3_storage_settings(s3_buckets())}
    settings = make_settings(storage=storage, queue={"run_worker": False})
    with build_runtime(settings, role) as runtime:
        runtime.storage.put("assets/probe.txt", b"x", content_type="text/plain")
        scrape = runtime.metrics.exposition().decode()
    assert 'stolentee_storage_operations_total{operation="PutObject",outcome="ok"} 1.0' in scrape


def test_close_releases_the_parts_it_built_but_not_those_handed_in(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(queue={"run_worker": False})
    disposed: list[Database] = []
    dispose = Database.dispose
    monkeypatch.setattr(Database, "dispose", lambda self: (disposed.append(self), dispose(self)))
    own = Database(settings=settings.database)
    try:
        build_runtime(settings, "removal", database=own).close()
        assert disposed == []  # the caller's database stays open
        built = build_runtime(settings, "removal")
        database = built.database
        built.close()
        assert disposed == [database]
    finally:
        dispose(own)


def test_the_rate_limit_is_shared_through_redis_when_redis_is_configured(
    make_settings: SettingsFactory, redis_url: str
) -> None:
    shared = make_settings(queue={"redis_url": redis_url})
    with build_runtime(shared, "removal") as runtime:
        assert isinstance(runtime.rate_limiter, RedisMegapixelRateLimiter)
    with build_runtime(make_settings(), "removal") as runtime:
        assert isinstance(runtime.rate_limiter, MegapixelRateLimiter)
