"""Backups on real engines: SQLite and local files, PostgreSQL (a private database) and SeaweedFS.

An instance with real designs (uploaded through the API, processed by its worker) is backed up,
a fresh instance is restored from it, and the two are compared row by row and object by object.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from stolentee.api.app import create_app
from stolentee.backup import catalog
from stolentee.backup import database as db_dump
from stolentee.backup.create import create_backup
from stolentee.backup.manifest import (
    BackupError,
    BackupManifest,
    DatabaseDump,
    manifest_key,
    object_key,
)
from stolentee.backup.restore import restore_backup
from stolentee.backup.targets import BackupTarget, open_target
from stolentee.config import Settings
from stolentee.db import migrate
from stolentee.db.engine import Database
from stolentee.metrics import BACKUP_LAST_SUCCESS
from stolentee.runtime import Runtime, build_runtime
from stolentee.storage.base import Storage
from stolentee.storage.factory import build_storage

from ..api.test_designs import HEADERS, KEY, upload, wait_for
from ..conftest import SettingsFactory
from ..removal.conftest import composite, draw_logo, encode


def _settings(make_settings: SettingsFactory, root: Path, **sections: Any) -> Settings:
    return make_settings(
        service={"data_dir": root},
        api={"api_keys": KEY},
        queue={"reaper_interval_s": 0.5},
        **sections,
    )


def _logo(seed: int) -> bytes:
    return encode(composite(draw_logo(), (255, 255 - seed, 255)))


def _populate(settings: Settings, count: int, *, first: int = 0) -> list[str]:
    """``count`` designs, uploaded and processed (original + cutout each)."""
    with TestClient(create_app(settings)) as client:
        ids = [upload(client, _logo(first + n)).json()["id"] for n in range(count)]
        for design_id in ids:
            assert wait_for(client, design_id)["status"] == "done"
    return ids


def _designs(runtime: Runtime) -> list[dict[str, Any]]:
    with runtime.database.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM designs ORDER BY id")).mappings().all()
    return [dict(row) for row in rows]


def _objects(runtime: Runtime) -> dict[str, str]:
    return {info.key: info.sha256 for info in runtime.storage.iterate("")}


@contextmanager
def _instance(settings: Settings) -> Iterator[tuple[Database, Storage]]:
    """The database and store as they are (a restore may meet a database without schema)."""
    database = Database(settings=settings.database, watchdog=False)
    storage = build_storage(settings)
    try:
        yield database, storage
    finally:
        storage.close()
        database.dispose()


def _backup(settings: Settings, target: BackupTarget, **kw: Any) -> BackupManifest:
    with _instance(settings) as (database, store):
        return create_backup(settings=settings, database=database, store=store, target=target, **kw)


def _restore(settings: Settings, target: BackupTarget, manifest: BackupManifest, **kw: Any) -> Any:
    with _instance(settings) as (database, store):
        return restore_backup(
            database=database, store=store, target=target, manifest=manifest, **kw
        )


def _same_instance(a: Settings, b: Settings) -> None:
    with build_runtime(a, "maintenance") as one, build_runtime(b, "maintenance") as two:
        assert _designs(one) == _designs(two)
        assert _objects(one) == _objects(two)


@pytest.fixture
def target(make_settings: SettingsFactory, tmp_path: Path) -> Iterator[BackupTarget]:
    opened = open_target(make_settings(), f"local:{tmp_path / 'backups'}")
    yield opened
    opened.close()


def test_a_backup_restores_into_an_empty_instance_row_for_row(
    make_settings: SettingsFactory, tmp_path: Path, target: BackupTarget
) -> None:
    source = _settings(make_settings, tmp_path / "shop")
    _populate(source, 3)
    manifest = _backup(source, target)
    assert len(manifest.objects) == 6 and manifest.copied_objects == 6
    assert manifest.database.format == "sqlite3" and manifest.schema_revision
    assert "secret" not in manifest.to_json().decode().lower()

    fresh = _settings(make_settings, tmp_path / "new-shop")
    result = _restore(fresh, target, manifest)
    assert result.objects == 6 and result.removed_designs == 0
    _same_instance(source, fresh)
    with TestClient(create_app(fresh)) as client:  # and it serves them
        listed = client.get("/v1/designs", headers=HEADERS).json()["data"]
        assert len(listed) == 3 and all(item["status"] == "done" for item in listed)
        assert client.get(listed[0]["cutout"]["url"]).status_code == 200

    with pytest.raises(BackupError, match="not empty"):
        _restore(fresh, target, manifest)
    assert _restore(fresh, target, manifest, force=True).objects == 6


def test_a_second_backup_copies_only_what_is_new(
    make_settings: SettingsFactory, tmp_path: Path, target: BackupTarget
) -> None:
    source = _settings(make_settings, tmp_path / "shop")
    _populate(source, 2)
    first = _backup(source, target)
    _populate(source, 1, first=10)
    second = _backup(source, target)
    assert len(second.objects) == 6
    assert second.copied_objects == 2  # the new design's original and cutout
    assert {e.key for e in first.objects} < {e.key for e in second.objects}
    assert [m.id for m in catalog.list_backups(target).complete] == [first.id, second.id]


def test_verify_finds_corrupt_truncated_and_missing_files_and_restore_refuses(
    make_settings: SettingsFactory, tmp_path: Path, target: BackupTarget
) -> None:
    source = _settings(make_settings, tmp_path / "shop")
    _populate(source, 2)
    manifest = _backup(source, target)
    assert catalog.verify_backup(target, manifest) == []
    root = tmp_path / "backups" / "objects"  # where the local backend keeps a key's bytes
    dump = root / manifest.database.key
    dump.write_bytes(dump.read_bytes()[:100])  # truncated
    corrupt = root / object_key(manifest.objects[0].sha256)
    corrupt.write_bytes(b"x" + corrupt.read_bytes()[1:])
    (root / object_key(manifest.objects[1].sha256)).unlink()  # missing
    problems = catalog.verify_backup(target, manifest)
    assert len(problems) == 3, problems
    assert any("database" in p and "corrupt" in p for p in problems)
    assert any(manifest.objects[1].key in p and "missing" in p for p in problems)

    fresh = _settings(make_settings, tmp_path / "new-shop")
    with pytest.raises(BackupError, match="does not verify"):
        _restore(fresh, target, manifest)
    with build_runtime(fresh, "maintenance") as runtime:
        assert _designs(runtime) == [] and _objects(runtime) == {}  # nothing written


def test_a_killed_backup_has_no_manifest_and_the_next_run_completes(
    make_settings: SettingsFactory, tmp_path: Path, target: BackupTarget
) -> None:
    source = _settings(make_settings, tmp_path / "shop")
    _populate(source, 2)
    stop = threading.Event()

    def kill_after_first_object(event: Any) -> None:
        if event.stage == "objects":
            stop.set()

    with pytest.raises(BackupError, match="interrupted"):
        _backup(source, target, progress=kill_after_first_object, stop=stop, concurrency=1)
    listing = catalog.list_backups(target)
    assert listing.complete == [] and len(listing.incomplete) == 1
    with pytest.raises(BackupError, match="no complete backup"):
        catalog.latest(target)

    finished = _backup(source, target)
    assert len(finished.objects) == 4 and finished.copied_objects < 4  # reused what was copied
    assert catalog.verify_backup(target, finished) == []


def test_designs_deleted_during_a_backup_are_left_out_consistently(
    make_settings: SettingsFactory,
    tmp_path: Path,
    target: BackupTarget,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Between the database snapshot and the object copy a design is deleted: the restored
    instance has no design without its objects."""
    source = _settings(make_settings, tmp_path / "shop")
    ids = _populate(source, 3)
    real_snapshot = db_dump.take_snapshot

    def snapshot_then_delete(database: Any, dest: Path) -> Any:
        taken = real_snapshot(database, dest)
        with TestClient(create_app(source)) as client:
            assert client.delete(f"/v1/designs/{ids[0]}", headers=HEADERS).status_code == 204
        return taken

    monkeypatch.setattr(db_dump, "take_snapshot", snapshot_then_delete)
    manifest = _backup(source, target)
    monkeypatch.undo()
    assert len(manifest.deleted_during_backup) == 2  # its original and its cutout
    fresh = _settings(make_settings, tmp_path / "new-shop")
    assert _restore(fresh, target, manifest).removed_designs == 1
    with build_runtime(fresh, "maintenance") as runtime:
        objects = _objects(runtime)
        designs = _designs(runtime)
        assert [row["id"] for row in designs] == sorted(ids[1:])
        for row in designs:
            assert row["original_key"] in objects and row["cutout_key"] in objects


def test_prune_applies_retention_and_keeps_what_kept_backups_name(
    make_settings: SettingsFactory, tmp_path: Path, target: BackupTarget
) -> None:
    source = _settings(make_settings, tmp_path / "shop")
    ids = _populate(source, 2)
    old = _backup(source, target)
    with TestClient(create_app(source)) as client:
        client.delete(f"/v1/designs/{ids[0]}", headers=HEADERS)
    new = _backup(source, target)
    later = datetime.now(UTC) + timedelta(days=3)  # past the grace for unnamed pool objects
    # Both backups fall on one day: keeping one day keeps only the newest.
    dry = catalog.prune(target, keep_daily=1, keep_weekly=0, dry_run=True, now=later)
    assert dry.removed_backups == [old.id] and catalog.load_manifest(target, old.id)
    result = catalog.prune(target, keep_daily=1, keep_weekly=0, now=later)
    assert result.removed_backups == [old.id] and result.removed_objects == 2
    assert [m.id for m in catalog.list_backups(target).complete] == [new.id]
    assert catalog.verify_backup(target, new) == []  # nothing the kept backup names went


def test_retention_keeps_the_newest_of_each_day_and_week() -> None:
    def manifest(day: datetime) -> BackupManifest:
        return BackupManifest(
            id=f"{day:%Y%m%dT%H%M%SZ}",
            started_at=day.isoformat(),
            finished_at=day.isoformat(),
            version="x",
            schema_revision=None,
            source={},
            database=DatabaseDump(key="k", format="sqlite3", size=0, sha256=""),
            objects=[],
        )

    start = datetime(2026, 11, 2, 3, tzinfo=UTC)  # a Monday
    backups = [manifest(start + timedelta(hours=12 * n)) for n in range(28)]  # two a day
    kept = catalog.kept_by_retention(backups, keep_daily=3, keep_weekly=2)
    newest = sorted(backups, key=lambda m: m.created)[-1]
    days = {m.created.date() for m in backups if m.id in kept}
    assert newest.id in kept
    assert len(kept) == 4  # the newest of each of the last 3 days + the newest of last week
    assert len(days) == 4
    assert catalog.kept_by_retention(backups, keep_daily=0, keep_weekly=0) == {newest.id}


@pytest.mark.postgres
def test_postgres_and_seaweedfs_backup_restore_into_another_database(
    make_settings: SettingsFactory,
    tmp_path: Path,
    postgres_url: str,
    s3_buckets: Callable[[], str],
    s3_storage_settings: Callable[..., dict[str, Any]],
) -> None:
    with _private_database(postgres_url) as shop_url, _private_database(postgres_url) as new_url:
        store_bucket, backup_bucket, new_bucket = s3_buckets(), s3_buckets(), s3_buckets()
        source = _settings(
            make_settings,
            tmp_path / "shop",
            database={"url": shop_url},
            storage={"backend": "s3", **s3_storage_settings(store_bucket)},
        )
        with _instance(source) as (database, _):
            migrate.upgrade(database)  # PostgreSQL is migrated by `stolentee db upgrade`
        _populate(source, 2)
        target = open_target(source, f"s3:{backup_bucket}/nightly")
        manifest = _backup(source, target)
        assert manifest.database.format == "pgdump" and len(manifest.objects) == 4
        assert target.exists(manifest_key(manifest.id))
        assert target.storage.exists(f"nightly/{manifest_key(manifest.id)}")
        assert catalog.verify_backup(target, manifest) == []
        assert all(entry.store_etag for entry in manifest.objects)
        again = _unread_backup(source, target)  # nothing changed: no object is read again
        assert again.copied_objects == 0 and len(again.objects) == 4

        fresh = _settings(
            make_settings,
            tmp_path / "new-shop",
            database={"url": new_url},
            storage={"backend": "s3", **s3_storage_settings(new_bucket)},
        )
        assert _restore(fresh, target, manifest).objects == 4
        _same_instance(source, fresh)
        target.close()


def _unread_backup(settings: Settings, target: BackupTarget) -> BackupManifest:
    """A backup during which any HEAD or GET of a stored object fails the test."""
    with _instance(settings) as (database, store):

        def refuse(key: str, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError(f"{key} was read although its listing had not changed")

        store.head = refuse  # type: ignore[method-assign]
        store.open_object = refuse  # type: ignore[method-assign]
        return create_backup(settings=settings, database=database, store=store, target=target)


@contextmanager
def _private_database(postgres_url: str) -> Iterator[str]:
    """A database of its own on the test server, dropped afterwards."""
    name = f"bk_{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def test_bad_targets_get_clear_errors(make_settings: SettingsFactory, tmp_path: Path) -> None:
    settings = make_settings()
    inside = open_target(settings, f"local:{settings.storage_dir / 'backups'}")
    with pytest.raises(BackupError, match="is the store being backed up"):
        _backup(settings, inside)
    inside.close()
    for spec, message in [
        ("ftp://host/x", "unknown backup target"),
        ("local:", "unknown backup target"),
        ("s3:", "unknown backup target"),
        ("s3:/prefix", "names no bucket"),
    ]:
        with pytest.raises(Exception, match=message):
            open_target(settings, spec)


def test_the_cli_creates_lists_verifies_and_restores(
    make_settings: SettingsFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stolentee.cli.backup import backup_app

    source = _settings(make_settings, tmp_path / "shop")
    _populate(source, 1)
    spec = f"local:{tmp_path / 'cli-backups'}"
    runner = CliRunner()
    monkeypatch.setenv("STOLENTEE_DATA_DIR", str(tmp_path / "shop"))
    created = runner.invoke(backup_app, ["create", "--to", spec, "--no-nice"])  # not pytest
    assert created.exit_code == 0, created.output
    assert "2 objects; 2 new" in created.output
    listed = runner.invoke(backup_app, ["list", "--from", spec])
    assert listed.exit_code == 0 and "complete" in listed.output
    assert runner.invoke(backup_app, ["verify", "--from", spec, "--no-nice"]).exit_code == 0
    refused = runner.invoke(backup_app, ["restore", "--from", spec])
    assert refused.exit_code == 1 and "not empty" in refused.output

    monkeypatch.setenv("STOLENTEE_DATA_DIR", str(tmp_path / "restored"))
    restored = runner.invoke(backup_app, ["restore", "--from", spec])
    assert restored.exit_code == 0, restored.output
    assert "2 objects" in restored.output
    originals = list((tmp_path / "restored" / "storage").rglob("original.png"))
    assert len(originals) == 1
    originals[0].unlink()  # one object lost; the database is fine
    objects_only = runner.invoke(backup_app, ["restore", "--from", spec, "--objects-only"])
    assert objects_only.exit_code == 0, objects_only.output
    assert "restored 1 object(s)" in objects_only.output and "1 already" in objects_only.output
    assert originals[0].exists()
    pool = tmp_path / "cli-backups" / "objects" / "objects"
    pooled = [path for path in pool.rglob("*") if path.is_file()]
    pooled[0].write_bytes(b"damaged")
    damaged = runner.invoke(backup_app, ["verify", "--from", spec, "--no-nice"])
    assert damaged.exit_code == 1 and "corrupt" in damaged.output


def test_health_and_metrics_show_the_last_backup_and_its_age(
    make_settings: SettingsFactory, tmp_path: Path, target: BackupTarget
) -> None:
    source = _settings(make_settings, tmp_path / "shop")
    with TestClient(create_app(source)) as client:
        assert client.get("/health/detailed").json()["backup"]["status"] == "none"
        assert BACKUP_LAST_SUCCESS not in client.get("/metrics").text
    manifest = _backup(source, target)
    with TestClient(create_app(source)) as client:
        section = client.get("/health/detailed").json()["backup"]
        assert section["status"] == "pass" and section["id"] == manifest.id
        assert section["target"] == target.spec and section["ageHours"] < 1
        exposed = client.get("/metrics").text
        finished = datetime.fromisoformat(manifest.finished_at).timestamp()
        line = next(row for row in exposed.splitlines() if row.startswith(BACKUP_LAST_SUCCESS))
        assert abs(float(line.split()[-1]) - finished) < 1
        runtime = client.app.state.services.runtime  # type: ignore[attr-defined]
        with runtime.database.engine.begin() as conn:  # as if it ran two days ago
            conn.execute(
                text("UPDATE backup_runs SET finished_at = :at"),
                {"at": datetime.now(UTC) - timedelta(hours=48)},
            )
        stale = client.get("/health/detailed").json()["backup"]
        assert stale["status"] == "warn" and 47.9 < stale["ageHours"] < 48.1


def test_schedule_prints_cron_kubernetes_and_railway_definitions() -> None:
    import tomllib

    import yaml

    from stolentee.cli.backup import backup_app

    runner = CliRunner()
    spec = "s3:shop-backups/nightly"
    cron = runner.invoke(backup_app, ["schedule", "--to", spec, "--keep-daily", "5"])
    assert cron.exit_code == 0, cron.output
    line = cron.output.splitlines()[-1]
    assert line.startswith("17 3 * * *  stolentee backup create --to s3:shop-backups/nightly &&")
    assert line.endswith("--keep-daily 5 --keep-weekly 4")

    kube = runner.invoke(
        backup_app, ["schedule", "--to", spec, "--format", "kubernetes", "--at", "0 */6 * * *"]
    )
    assert kube.exit_code == 0, kube.output
    job = yaml.safe_load(kube.output)
    assert job["kind"] == "CronJob" and job["spec"]["schedule"] == "0 */6 * * *"
    assert job["spec"]["concurrencyPolicy"] == "Forbid"
    container = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:2] == ["sh", "-c"] and "backup prune" in container["command"][2]
    assert container["envFrom"] == [{"secretRef": {"name": "stolentee-env"}}]

    railway = runner.invoke(backup_app, ["schedule", "--to", spec, "--format", "railway"])
    deploy = tomllib.loads(railway.output)["deploy"]
    assert deploy["cronSchedule"] == "17 3 * * *" and deploy["restartPolicyType"] == "NEVER"
    assert "stolentee backup create --to s3:shop-backups/nightly" in deploy["startCommand"]

    for args, message in [
        (["--to", "ftp:x"], "unknown backup target"),
        (["--to", spec, "--at", "every night"], "five fields"),
        (["--to", spec, "--format", "xml"], "unknown format"),
    ]:
        refused = runner.invoke(backup_app, ["schedule", *args])
        assert refused.exit_code != 0 and message in refused.output, refused.output


def test_a_target_with_wrong_credentials_is_a_clear_error(
    make_settings: SettingsFactory,
    tmp_path: Path,
    s3_buckets: Callable[[], str],
    s3_storage_settings: Callable[..., dict[str, Any]],
) -> None:
    from stolentee.errors import StorageError

    source = _settings(make_settings, tmp_path / "shop")
    _populate(source, 1)
    bucket = s3_buckets()
    wrong = make_settings(
        storage=s3_storage_settings(bucket, s3_secret_access_key="not-the-secret")
    )
    target = open_target(wrong, f"s3:{bucket}")
    with pytest.raises(StorageError, match=r"(?i)credential|denied|signature") as refused:
        _backup(source, target)
    target.close()
    assert "not-the-secret" not in str(refused.value)
    assert (
        catalog.list_backups(open_target(make_settings(), f"local:{tmp_path}/none")).complete == []
    )
