"""``stolentee jobs retry``: failed jobs queued again from the command line (issue 23, item 3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from stolentee.cli import app
from stolentee.cli.jobs import parse_since
from stolentee.config import Settings
from stolentee.jobs.states import FAILED, QUEUED
from stolentee.runtime import build_runtime

runner = CliRunner()
OWNER = "host:1:abc/0"


def test_parse_since_takes_iso_times_and_durations() -> None:
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    assert parse_since("90m", now=now) == now - timedelta(minutes=90)
    assert parse_since("2d", now=now) == now - timedelta(days=2)
    assert parse_since("2026-12-06T10:00:00Z", now=now) == datetime(2026, 12, 6, 10, tzinfo=UTC)
    assert parse_since("2026-12-06T10:00:00", now=now) == datetime(2026, 12, 6, 10, tzinfo=UTC)
    with pytest.raises(typer.BadParameter):
        parse_since("yesterday", now=now)


def test_jobs_retry_lists_then_queues_failed_jobs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STOLENTEE_DATA_DIR", str(tmp_path / "data"))
    with build_runtime(Settings(), "maintenance") as runtime:
        queue = runtime.queue
        ids = [queue.enqueue("design", {"n": n}, max_attempts=1).id for n in range(3)]
        for job_id in ids:
            assert queue.lease(job_id, OWNER) is not None
            assert queue.fail(job_id, OWNER, "StorageError: disk full") is not None
        queue.transport.flush()  # their first messages were never received

    listed = runner.invoke(app, ["jobs", "retry", "--dry-run", "--since", "1h"])
    assert listed.exit_code == 0, listed.output
    assert "3 failed job(s) would be retried" in listed.output
    assert ids[0] in listed.output

    assert runner.invoke(app, ["jobs", "retry", "--since", "2099-01-01"]).output.startswith("0 ")
    refused = runner.invoke(app, ["jobs", "retry", "--status", "done"])
    assert refused.exit_code == 2 and "only --status failed" in refused.output

    retried = runner.invoke(app, ["jobs", "retry", "--limit", "2"])
    assert retried.exit_code == 0, retried.output
    assert "2 failed job(s) queued again" in retried.output
    with build_runtime(Settings(), "maintenance") as runtime:
        states = [job.state for job in runtime.queue.get_many(ids).values()]
        assert sorted(states) == sorted([QUEUED, QUEUED, FAILED])
        assert runtime.queue.transport.pending() == 2
