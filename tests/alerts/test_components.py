"""The components a running API watches, checked for real (database, storage, queue, removal
providers), and the watching thread of a real app: it never holds up a request, and a bad
webhook URL stops the start-up."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from stolentee.alerts.components import ComponentHealth
from stolentee.api.app import create_app
from stolentee.errors import ConfigurationError
from stolentee.runtime import Runtime
from tests.fakes.callback_receiver import HANG, Receiver

from ..conftest import SettingsFactory
from ..removal.conftest import composite, draw_logo, encode

KEY = "alerts-test-key-0123456789"
HEADERS = {"X-Api-Key": KEY}
LOGO = encode(composite(draw_logo((120, 80)), (255, 255, 255)))


def runtime_of(client: TestClient) -> Runtime:
    runtime: Runtime = client.app.state.services.runtime  # type: ignore[attr-defined]
    return runtime


def checked(client: TestClient) -> dict[str, ComponentHealth]:
    watch = runtime_of(client).health_watch
    assert watch is not None
    return {health.name: health for health in watch._components.check()}


@pytest.fixture
def app_client(make_settings: SettingsFactory, receiver: Receiver) -> Iterator[TestClient]:
    settings = make_settings(
        api={"api_keys": KEY},
        alerts={
            "webhook_url": receiver.url(),
            "internal_hosts": "127.0.0.1",
            "queue_backlog": 1,
            "debounce_s": 0,
            "check_interval_s": 0.2,
            "timeout_s": 30,
        },
    )
    with TestClient(create_app(settings, run_worker=False), headers=HEADERS) as client:
        yield client


def test_every_component_passes_on_a_healthy_instance(app_client: TestClient) -> None:
    components = checked(app_client)
    provider = runtime_of(app_client).providers.provider_names[0]
    assert set(components) == {"database", "storage", "queue", f"removal:{provider}"}
    assert {health.status for health in components.values()} == {"pass"}
    assert "round trip" in components["database"].detail


def test_a_backlog_warns_and_an_open_breaker_fails(app_client: TestClient) -> None:
    for _ in range(2):  # no worker: both stay queued, over the backlog of 1
        uploaded = app_client.post("/v1/designs", files={"file": ("logo.png", LOGO)})
        assert uploaded.status_code == 202, uploaded.text
    chain = runtime_of(app_client).providers
    provider = chain.provider_names[0]
    for _ in range(20):
        chain.breaker(provider).record_failure("model crashed")
    components = checked(app_client)
    assert components["queue"].status == "warn"
    assert components["queue"].detail.startswith("2 queued")
    assert components[f"removal:{provider}"].status == "fail"
    assert "model crashed" in components[f"removal:{provider}"].detail


def test_a_receiver_that_hangs_never_holds_up_a_request(
    app_client: TestClient, receiver: Receiver
) -> None:
    receiver.script = [HANG]
    chain = runtime_of(app_client).providers
    for _ in range(20):
        chain.breaker(chain.provider_names[0]).record_failure("down")
    deadline = time.monotonic() + 30
    while not receiver.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    assert receiver.requests, "the failure notice was never sent"
    # The watching thread now waits for an answer that never comes (up to 30 s); requests,
    # the database and health go on.
    for _ in range(20):
        assert app_client.get("/health/detailed").status_code in (200, 503)
        assert app_client.get("/v1/designs").status_code == 200
    assert len(receiver.requests) == 1  # still in its first attempt
    receiver.stopping.set()  # let the hanging answer end, so that the app stops at once


def test_a_bad_webhook_url_stops_the_start_up_with_the_settings_name(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(alerts={"webhook_url": "http://hooks.example.com/notify"})
    with (
        pytest.raises(ConfigurationError, match="STOLENTEE_ALERT_WEBHOOK_URL is refused"),
        TestClient(create_app(settings)),
    ):
        pass
