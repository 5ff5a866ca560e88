"""huey carries job ids: SQLite file on the embedded default, Redis when REDIS_URL is set."""

from __future__ import annotations

import threading
import time

import pytest
from huey import RedisHuey, SqliteHuey

from stolentee.jobs.transport import WIRE_NAME, Transport, build_transport

from ..conftest import SettingsFactory
from .conftest import TransportFactory


@pytest.fixture(params=["sqlite", "redis", "memory"])
def any_transport(
    request: pytest.FixtureRequest, make_transport: TransportFactory, transport: Transport
) -> Transport:
    if request.param == "memory":
        return transport
    if request.param == "redis":
        return make_transport(request.getfixturevalue("redis_url"))
    return make_transport()


def test_settings_choose_the_backend(
    make_settings: SettingsFactory, make_transport: TransportFactory, redis_url: str
) -> None:
    embedded = make_transport()
    assert isinstance(embedded.huey, SqliteHuey)
    settings = make_settings()
    assert (settings.service.data_dir / "queue.db").is_file()
    scaled = make_transport(redis_url)
    assert isinstance(scaled.huey, RedisHuey)
    assert scaled.backend == "redis"
    assert embedded.backend == "sqlite"


def test_send_and_receive_in_order(any_transport: Transport) -> None:
    for job_id in ("a1", "b2", "c3"):
        any_transport.send(job_id)
    assert any_transport.pending() == 3
    assert [any_transport.receive(0.5) for _ in range(3)] == ["a1", "b2", "c3"]
    assert any_transport.receive(0.05) is None


def test_delayed_message_waits_in_the_schedule(any_transport: Transport) -> None:
    any_transport.send("later", delay_s=0.3)
    assert any_transport.pending() == 0
    assert any_transport.scheduled() == 1
    assert any_transport.promote_due() == 0
    time.sleep(0.35)
    assert any_transport.promote_due() == 1
    assert any_transport.receive(0.5) == "later"


def test_messages_are_plain_huey_tasks_under_a_fixed_name(
    make_settings: SettingsFactory, redis_url: str
) -> None:
    """Two processes building their transport separately agree on the messages."""
    settings = make_settings(queue={"redis_url": redis_url})
    sender, receiver = build_transport(settings), build_transport(settings)
    try:
        sender.send("job-1")
        [message] = sender.huey.pending()
        assert f"{type(message).__module__}.{type(message).__name__}" == WIRE_NAME
        assert receiver.receive(1.0) == "job-1"
    finally:
        sender.close()
        receiver.close()


def test_a_foreign_message_is_dropped(any_transport: Transport) -> None:
    foreign = any_transport.huey.task(name="other")(lambda: None)
    any_transport.huey.enqueue(foreign.s())
    any_transport.send("mine")
    assert any_transport.receive(0.5) == "mine"


def test_a_local_send_wakes_a_waiting_receiver(make_transport: TransportFactory) -> None:
    embedded = make_transport(poll_s=5.0)  # polling alone would take far longer
    got: list[str | None] = []
    thread = threading.Thread(target=lambda: got.append(embedded.receive(5.0)))
    thread.start()
    time.sleep(0.2)
    started = time.monotonic()
    embedded.send("now")
    thread.join(5)
    assert got == ["now"]
    assert time.monotonic() - started < 4.0  # woken, not polled (poll_s is 5 s)


def test_flush_drops_everything(any_transport: Transport) -> None:
    any_transport.send("x")
    any_transport.send("y", delay_s=60)
    any_transport.flush()
    assert (any_transport.pending(), any_transport.scheduled()) == (0, 0)
