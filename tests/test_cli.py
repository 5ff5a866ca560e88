"""The CLI: config show masks secrets, db commands migrate, bad config exits cleanly."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from stolentee.cli import app
from stolentee.db import migrate

runner = CliRunner()


def test_config_show_masks_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMOVEBG_API_KEY", "top-secret-key")
    monkeypatch.setenv("DATABASE_URL", "postgresql://shop:hunter2@db:5432/shop")
    result = runner.invoke(app, ["config", "show", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["REMOVEBG_API_KEY"] == "***"
    assert shown["DATABASE_URL"] == "postgresql+psycopg://shop:***@db:5432/shop"
    assert shown["STOLENTEE_ENV"] == "development"
    assert "top-secret-key" not in result.output and "hunter2" not in result.output

    table = runner.invoke(app, ["config", "show"], env={"COLUMNS": "200"})
    assert table.exit_code == 0
    assert "REMOVEBG_API_KEY" in table.output and "top-secret-key" not in table.output


def test_invalid_configuration_exits_with_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOLENTEE_ENV", "staging")
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 2
    assert "Invalid configuration" in result.output


def test_db_upgrade_and_current(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STOLENTEE_DATA_DIR", str(tmp_path / "data"))
    current = runner.invoke(app, ["db", "current"])
    assert current.exit_code == 0 and "migrations pending" in current.output
    upgraded = runner.invoke(app, ["db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    assert f"upgraded from empty to {migrate.head_revision()}" in upgraded.output
    assert (tmp_path / "data" / "stolentee.db").exists()
    again = runner.invoke(app, ["db", "upgrade"])
    assert "already at revision" in again.output
    assert "up to date" in runner.invoke(app, ["db", "current"]).output


def test_config_docs_lists_every_variable() -> None:
    result = runner.invoke(app, ["config", "docs"])
    assert result.exit_code == 0
    assert "| `DATABASE_URL` |" in result.output and "| `R2_PUBLIC_DOMAIN` |" in result.output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_serve_answers_health_on_the_embedded_default(tmp_path: Path) -> None:
    """What `make run` does: start the real server process on SQLite and local files."""
    port = _free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("STOLENTEE_", "DATABASE_URL", "REDIS_URL"))
    }
    env.update({"STOLENTEE_DATA_DIR": str(tmp_path / "data"), "PORT": str(port)})
    env["STOLENTEE_SHUTDOWN_DRAIN_S"] = "0"  # no load balancer to leave: stop at once
    process = subprocess.Popen(
        [sys.executable, "-m", "stolentee", "serve"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        response = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert response is not None, "server did not answer"
        assert response.status_code == 200 and response.json()["status"] == "ok"
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.status_code == 200
        assert (tmp_path / "data" / "stolentee.db").exists()
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0].decode()
    assert "ready" in output


def test_command_groups_are_imported_only_when_used() -> None:
    """``stolentee migrate-storage`` does not pay for SQLAlchemy, the cost model or autoscaling;
    every lazily mounted group still answers, with the same help as when mounted eagerly."""
    probe = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from stolentee.cli import app\n"
        "result = CliRunner().invoke(app, ['migrate-storage', '--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "heavy = ['sqlalchemy', 'stolentee.cli.costs', 'stolentee.cli.autoscale',\n"
        "         'stolentee.cli.stats', 'stolentee.cli.bench', 'stolentee.cli.keys']\n"
        "print(','.join(name for name in heavy if name in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""

    listing = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert listing.exit_code == 0
    for name in ("keys", "bench", "stats", "costs", "autoscale", "migrate-storage"):
        assert f" {name} " in listing.output
        sub = runner.invoke(app, [name, "--help"], env={"COLUMNS": "200"})
        assert sub.exit_code == 0, sub.output
        assert "--install-completion" not in sub.output
    assert runner.invoke(app, ["no-such-command"]).exit_code == 2
