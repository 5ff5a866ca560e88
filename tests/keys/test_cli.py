"""``stolentee keys create|list|revoke`` through typer's CliRunner."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from stolentee.cli.keys import keys_app
from stolentee.config import Settings
from stolentee.db import migrate
from stolentee.db.engine import Database
from stolentee.keys.store import KeyStore

runner = CliRunner()
WIDE = {"COLUMNS": "200"}


@pytest.fixture
def data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    path = tmp_path / "data"
    monkeypatch.setenv("STOLENTEE_DATA_DIR", str(path))
    return path


def test_create_prints_the_key_once_and_it_works(data_dir: Path) -> None:
    result = runner.invoke(keys_app, ["create", "shop-frontend", "--premium"])
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert key.startswith("st_") and len(key) == 43
    assert "shown only once" in result.stderr and "(premium)" in result.stderr
    assert (data_dir / "stolentee.db").exists()  # SQLite default: migrated on first use

    database = Database(settings=Settings().database, watchdog=False)
    try:
        principal = KeyStore(database=database).authenticate(key)
    finally:
        database.dispose()
    assert principal is not None and principal.premium and principal.name == "shop-frontend"


def test_list_shows_keys_with_usage_and_revocation(data_dir: Path) -> None:
    created = runner.invoke(keys_app, ["create", "batch"])
    key = created.stdout.strip()
    database = Database(settings=Settings().database, watchdog=False)
    try:
        store = KeyStore(database=database)
        principal = store.authenticate(key)
        assert principal is not None
        store.record_usage(principal, images=3, megapixels=12.0, credits=2.5)
    finally:
        database.dispose()

    listed = runner.invoke(keys_app, ["list"], env=WIDE)
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.stdout.splitlines() if "batch" in line)
    assert key[:8] in row and key not in listed.output
    assert " no " in row and " 3 " in row and "2.5" in row and row.count(":") == 2

    revoked = runner.invoke(keys_app, ["revoke", key[:8]])
    assert revoked.exit_code == 0, revoked.output
    row = next(
        line
        for line in runner.invoke(keys_app, ["list"], env=WIDE).stdout.splitlines()
        if "batch" in line
    )
    assert row.count(":") == 3  # created, last used, revoked: HH:MM each


def test_revoke_unknown_or_twice_fails(data_dir: Path) -> None:
    runner.invoke(keys_app, ["create", "n"])
    assert runner.invoke(keys_app, ["revoke", "1"]).exit_code == 0
    again = runner.invoke(keys_app, ["revoke", "1"])
    assert again.exit_code == 1 and "no active key" in again.stderr
    assert runner.invoke(keys_app, ["revoke", "st_nope"]).exit_code == 1


def test_bad_name_is_a_clean_error(data_dir: Path) -> None:
    result = runner.invoke(keys_app, ["create", "   "])
    assert result.exit_code == 1 and "invalid_option" in result.stderr
    assert result.stdout == ""


def test_list_mentions_static_keys(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOLENTEE_API_KEYS", "one,two")
    result = runner.invoke(keys_app, ["list"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "2 more key(s)" in result.stdout and "one" not in result.stdout


def test_postgres_needs_an_explicit_upgrade(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, pg_schema_url: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", pg_schema_url)
    refused = runner.invoke(keys_app, ["create", "n"])
    assert refused.exit_code == 1 and "stolentee db upgrade" in refused.stderr
    database = Database(settings=Settings().database, watchdog=False)
    try:
        migrate.upgrade(database)
    finally:
        database.dispose()
    created = runner.invoke(keys_app, ["create", "n"])
    assert created.exit_code == 0, created.output
    assert created.stdout.strip().startswith("st_")
