"""The goal of the built-in notices, with real processes: two API replicas on one PostgreSQL
watch a real removal service; it is killed (SIGKILL) and restarted, and the webhook receiver
gets exactly one failure notice and one recovery notice, each within 30 s."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.fakes.callback_receiver import Receiver
from tests.fakes.processes import STOLENTEE, StolenteeProcess, clean_environment

SERVICE_KEY = "st_removal_service_key"
SHOP_KEY = "st_shop_static_key"
COMPONENT = "removal:rembg-service"
GOAL_S = 30.0


def wait_for(condition: Callable[[], Any], what: str, timeout_s: float) -> float:
    """Seconds until ``condition()`` held; fails after ``timeout_s``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if condition():
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout_s:g} s")


def notices(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(request.body) for request in receiver.requests]


@pytest.fixture
def replicas(
    tmp_path: Path, pg_schema_url: str, receiver: Receiver
) -> Iterator[tuple[StolenteeProcess, list[StolenteeProcess]]]:
    service = StolenteeProcess(
        ["removal-service"],
        {"STOLENTEE_DATA_DIR": str(tmp_path / "service"), "STOLENTEE_API_KEYS": SERVICE_KEY},
        tmp_path / "service.log",
    )
    env = {
        "DATABASE_URL": pg_schema_url,
        "STOLENTEE_API_KEYS": SHOP_KEY,
        "REMBG_ENDPOINT": service.url,
        "REMBG_API_KEY": SERVICE_KEY,
        "STOLENTEE_PROVIDER_PROBE_INTERVAL_S": "2",
        "STOLENTEE_ALERT_WEBHOOK_URL": receiver.url(),
        "STOLENTEE_ALERT_INTERNAL_HOSTS": "127.0.0.1",
        "STOLENTEE_ALERT_CHECK_INTERVAL_S": "1",  # the debounce keeps its default, 10 s
    }
    subprocess.run(  # our own command line
        [STOLENTEE, "db", "upgrade"], env={**clean_environment(), **env}, check=True,
        capture_output=True, timeout=120,
    )  # fmt: skip
    apis = [
        StolenteeProcess(
            ["serve", "--no-worker"],
            {**env, "STOLENTEE_DATA_DIR": str(tmp_path / f"api-{n}")},
            tmp_path / f"api-{n}.log",
        )
        for n in (1, 2)
    ]
    started: list[StolenteeProcess] = []
    try:
        for process in (service, *apis):
            started.append(process.start())
        yield service, apis
    finally:
        for process in reversed(started):
            process.stop()


def test_a_killed_and_restarted_removal_service_makes_one_failure_and_one_recovery_notice(
    replicas: tuple[StolenteeProcess, list[StolenteeProcess]],
    receiver: Receiver,
    pg_schema_url: str,
) -> None:
    service, apis = replicas
    engine = create_engine(pg_schema_url)

    def announced() -> set[str]:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT component, announced_status FROM alert_components"))
            return {component for component, status in rows if status == "pass"}

    try:
        # Every component first seen passing, recorded quietly.
        wait_for(lambda: COMPONENT in announced(), "the removal service recorded as up", 60)
        assert receiver.requests == []

        service.kill()
        failed_after = wait_for(lambda: receiver.requests, "the failure notice", GOAL_S)
        for api in apis:  # both replicas keep answering meanwhile
            assert httpx.get(f"{api.url}/health", timeout=5).status_code == 200

        service.start()
        recovered_after = wait_for(lambda: len(receiver.requests) >= 2, "the recovery", GOAL_S)
        time.sleep(5)  # nothing more comes: not the other replica, not a repeat
    finally:
        engine.dispose()

    failure, recovery = notices(receiver)
    assert (failure["component"], failure["status"], failure["previous"]) == (
        COMPONENT,
        "fail",
        "pass",
    )
    assert (recovery["component"], recovery["status"], recovery["recovered"]) == (
        COMPONENT,
        "pass",
        True,
    )
    assert failure["sentBy"] == recovery["sentBy"]  # one replica watches
    print(f"failure notice {failed_after:.1f} s after the kill, recovery {recovered_after:.1f} s")
