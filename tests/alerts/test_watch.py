"""Health notices: the lease, the debounce, the flap limit, exactly one notice per change across
replicas, delivery retried with backoff, and the webhook URL vetted at start-up. On SQLite and
PostgreSQL; the webhook is a real HTTP receiver on loopback."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from stolentee.alerts import lease
from stolentee.alerts.components import ComponentHealth, Status
from stolentee.alerts.notices import Webhook
from stolentee.alerts.watch import HealthWatch
from stolentee.config import AlertSettings
from stolentee.db.engine import Database
from stolentee.errors import ConfigurationError
from tests.fakes.callback_receiver import HANG, Receiver
from tests.fakes.clocks import FakeWallClock


@dataclass
class Scripted:
    """Components whose statuses the test sets (the real checks have tests of their own)."""

    statuses: dict[str, Status] = field(default_factory=lambda: {"database": "pass"})

    def check(self) -> list[ComponentHealth]:
        return [ComponentHealth(name, s, f"{name} is {s}") for name, s in self.statuses.items()]


def alert_settings(receiver: Receiver, **overrides: Any) -> AlertSettings:
    values: dict[str, Any] = {
        "webhook_url": receiver.url(),
        "internal_hosts": "127.0.0.1",
        "debounce_s": 10,
        "check_interval_s": 1,
        "timeout_s": 2,
        "retry_backoff_s": 1,
        **overrides,
    }
    return AlertSettings(**values)


def watcher(
    database: Database,
    receiver: Receiver,
    components: Scripted,
    wall: FakeWallClock,
    *,
    holder: str = "api-1",
    **overrides: Any,
) -> HealthWatch:
    settings = alert_settings(receiver, **overrides)
    return HealthWatch(
        database=database,
        components=components,
        webhook=Webhook.from_settings(settings, environment="test"),
        settings=settings,
        holder=holder,
        clock=wall,
    )


def bodies(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(request.body) for request in receiver.requests]


def test_a_lease_is_held_by_one_holder_until_it_expires_or_is_released(database: Database) -> None:
    now = FakeWallClock().now
    assert lease.acquire(database, "alerts", "a", ttl_s=10, now=now)
    assert not lease.acquire(database, "alerts", "b", ttl_s=10, now=now)
    assert lease.acquire(database, "alerts", "a", ttl_s=10, now=now + timedelta(seconds=8))
    assert not lease.acquire(database, "alerts", "b", ttl_s=10, now=now + timedelta(seconds=15))
    later = now + timedelta(seconds=19)  # a renewed at 8 s: held until 18 s
    assert lease.acquire(database, "alerts", "b", ttl_s=10, now=later)
    assert not lease.acquire(database, "alerts", "a", ttl_s=10, now=later)
    lease.release(database, "alerts", "b")
    assert lease.acquire(database, "alerts", "a", ttl_s=10, now=later)


def test_a_change_is_announced_once_it_has_held_for_the_debounce_and_a_blip_is_not(
    database: Database, receiver: Receiver
) -> None:
    wall, components = FakeWallClock(), Scripted()
    watch = watcher(database, receiver, components, wall)
    watch.run_once()
    assert receiver.requests == []  # first seen passing: nothing to say

    components.statuses["database"] = "fail"  # a blip of 4 s
    for _ in range(4):
        wall.advance(1)
        watch.run_once()
    components.statuses["database"] = "pass"
    wall.advance(1)
    watch.run_once()
    wall.advance(30)
    watch.run_once()
    assert receiver.requests == []

    components.statuses["database"] = "fail"
    for _ in range(9):
        wall.advance(1)
        watch.run_once()
    assert receiver.requests == []  # 9 s: not yet
    wall.advance(1.5)
    watch.run_once()
    wall.advance(5)
    watch.run_once()
    (failure,) = bodies(receiver)
    assert failure["component"] == "database"
    assert (failure["status"], failure["previous"], failure["recovered"]) == ("fail", "pass", False)
    assert failure["text"].startswith(":red_circle: stolentee (test): database is failing")
    assert failure["detail"] == "database is fail"

    components.statuses["database"] = "pass"
    wall.advance(11)
    watch.run_once()  # observed at once...
    wall.advance(11)
    watch.run_once()  # ...and announced after the debounce
    assert [body["status"] for body in bodies(receiver)] == ["fail", "pass"]
    recovery = bodies(receiver)[1]
    assert recovery["recovered"] is True and "recovered (was fail)" in recovery["text"]


def test_a_component_first_seen_failing_is_announced(
    database: Database, receiver: Receiver
) -> None:
    wall = FakeWallClock()
    watch = watcher(database, receiver, Scripted({"queue": "warn"}), wall, debounce_s=0)
    watch.run_once()
    (notice,) = bodies(receiver)
    assert (notice["component"], notice["status"], notice["previous"]) == ("queue", "warn", None)


def test_a_flapping_component_is_held_back_then_its_status_is_announced(
    database: Database, receiver: Receiver
) -> None:
    wall, components = FakeWallClock(), Scripted()
    watch = watcher(
        database, receiver, components, wall, debounce_s=0, flap_limit=2, flap_window_s=600
    )
    watch.run_once()
    for status in ("fail", "pass", "fail", "pass", "fail"):  # one change a minute
        components.statuses["database"] = status
        wall.advance(60)
        watch.run_once()
    assert [body["status"] for body in bodies(receiver)] == ["fail", "pass"]
    wall.advance(600)  # the window has room again: the status now is announced once
    watch.run_once()
    watch.run_once()
    assert [body["status"] for body in bodies(receiver)] == ["fail", "pass", "fail"]


def test_two_replicas_send_exactly_one_notice_per_change_and_a_survivor_takes_over(
    database: Database, receiver: Receiver
) -> None:
    wall, components = FakeWallClock(), Scripted()
    first = watcher(database, receiver, components, wall, holder="api-1", debounce_s=0)
    second = watcher(database, receiver, components, wall, holder="api-2", debounce_s=0)
    for status in ("pass", "fail", "pass"):
        components.statuses["database"] = status
        for _ in range(3):
            first.run_once()
            second.run_once()
            wall.advance(1)
    assert (first.leading, second.leading) == (True, False)
    assert [(b["status"], b["sentBy"]) for b in bodies(receiver)] == [
        ("fail", "api-1"),
        ("pass", "api-1"),
    ]

    # api-1 dies without releasing; once its lease expires, api-2 watches and announces.
    components.statuses["database"] = "fail"
    wall.advance(first.lease_ttl_s + 1)
    second.run_once()
    assert second.leading
    assert [(b["status"], b["sentBy"]) for b in bodies(receiver)][-1] == ("fail", "api-2")
    assert len(receiver.requests) == 3


def test_a_receiver_answering_500_or_timing_out_is_retried_with_backoff(
    database: Database, receiver: Receiver
) -> None:
    receiver.script = [500, HANG, 200]
    wall = FakeWallClock()
    watch = watcher(
        database, receiver, Scripted({"storage": "fail"}), wall, debounce_s=0, timeout_s=0.5
    )
    watch.run_once()  # announced; the first attempt gets 500
    assert len(receiver.requests) == 1
    watch.run_once()  # backoff (1 s) not over: nothing sent
    assert len(receiver.requests) == 1
    wall.advance(1.1)
    watch.run_once()  # second attempt: no answer within 0.5 s
    assert len(receiver.requests) == 2
    wall.advance(1.5)
    watch.run_once()  # the claim (hold) of the timed-out attempt has not run out yet
    wall.advance(1.0)
    watch.run_once()  # third: delivered
    wall.advance(60)
    watch.run_once()
    assert len(receiver.requests) == 3
    ids = {json.loads(request.body)["id"] for request in receiver.requests}
    assert len(ids) == 1  # the same notice each time (a receiver may drop repeats by id)
    assert {request.headers["Idempotency-Key"] for request in receiver.requests} == {
        f"stolentee-alert-{ids.pop()}"
    }


def test_a_notice_the_receiver_refuses_is_not_retried(
    database: Database, receiver: Receiver
) -> None:
    receiver.script = [404]
    wall = FakeWallClock()
    watch = watcher(database, receiver, Scripted({"storage": "fail"}), wall, debounce_s=0)
    for _ in range(5):
        watch.run_once()
        wall.advance(60)
    assert len(receiver.requests) == 1


def test_the_json_format_has_no_slack_text(database: Database, receiver: Receiver) -> None:
    wall = FakeWallClock()
    watch = watcher(
        database, receiver, Scripted({"queue": "fail"}), wall, debounce_s=0, webhook_format="json"
    )
    watch.run_once()
    (body,) = bodies(receiver)
    assert "text" not in body
    assert set(body) >= {"id", "component", "status", "previous", "detail", "at", "environment"}


@pytest.mark.parametrize(
    ("url", "internal", "why"),
    [
        ("http://hooks.example.com/x", "", "must use https"),
        ("https://10.0.0.7/hook", "", "private"),
        ("http://127.0.0.1:9/hook", "", "must use https"),
        ("https://127.0.0.1:9/hook", "", "loopback"),
        ("http://169.254.169.254/latest", "169.254.169.254", "link-local"),
        ("ftp://hooks.example.com/x", "", "http"),
        ("not a url", "", ""),
    ],
)
def test_a_bad_webhook_url_is_refused_at_start_up(url: str, internal: str, why: str) -> None:
    settings = AlertSettings(webhook_url=url, internal_hosts=internal)
    with pytest.raises(ConfigurationError, match="STOLENTEE_ALERT_WEBHOOK_URL is refused") as err:
        Webhook.from_settings(settings, environment="test")
    assert why in err.value.detail


def test_wildcard_internal_hosts_are_refused() -> None:
    with pytest.raises(ValueError, match="exact names"):
        AlertSettings(internal_hosts="*.internal")


def test_the_database_going_down_is_announced_once_and_its_recovery_too(
    tmp_path: Any, receiver: Receiver
) -> None:
    """A private PostgreSQL is stopped and started again: the replica that held the lease sends
    the failure notice itself (the outbox is in the database), the other stays quiet, and the
    recovery comes through the outbox."""
    from stolentee.alerts.components import Components
    from stolentee.config import DatabaseSettings
    from stolentee.db import migrate
    from tests.fakes.servers import PrivatePostgres

    server = PrivatePostgres().start()
    databases = []
    try:
        wall = FakeWallClock()
        watchers = []
        for holder in ("api-1", "api-2"):
            database = Database(settings=DatabaseSettings(url=server.url, pool_timeout_s=2))
            databases.append(database)
            settings = alert_settings(receiver, debounce_s=0)
            watchers.append(
                HealthWatch(
                    database=database,
                    components=Components(database=database, settings=settings),
                    webhook=Webhook.from_settings(settings, environment="test"),
                    settings=settings,
                    holder=holder,
                    clock=wall,
                )
            )
        migrate.upgrade(databases[0])
        for watch in watchers:
            watch.run_once()
        assert receiver.requests == []  # healthy, first seen: quiet

        server.stop()
        for _ in range(3):
            wall.advance(1)
            for watch in watchers:
                with pytest.raises(Exception):  # noqa: B017, PT011 - any driver error
                    watch.run_once()
        (down,) = bodies(receiver)
        assert (down["component"], down["status"], down["sentBy"]) == ("database", "fail", "api-1")
        assert down["id"] is None  # sent outside the outbox

        server.start_again()
        for _ in range(3):
            wall.advance(1)
            for watch in watchers:
                watch.run_once()
        assert [(b["component"], b["status"], b["previous"]) for b in bodies(receiver)] == [
            ("database", "fail", "pass"),
            ("database", "pass", "fail"),
        ]
    finally:
        for database in databases:
            database.dispose()
        server.remove()
