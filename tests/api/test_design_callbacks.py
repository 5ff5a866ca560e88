"""Design callbacks end to end: upload with ``callback_url``, the in-process worker finishes the
design, a real receiver on 127.0.0.1 gets the signed POST (loopback is allowed only because the
test settings name 127.0.0.1 in STOLENTEE_CALLBACK_INTERNAL_HOSTS)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from stolentee.api.app import create_app
from stolentee.designs.callbacks import verify_signature
from stolentee.errors import ConfigurationError
from tests.fakes.callback_receiver import HANG, Receiver

from ..conftest import SettingsFactory
from .test_designs import HEADERS, KEY, LOGO, store_unusable_design, upload, wait_for

SECRET = "test-callback-secret-0123456789"
CALLBACK_SETTINGS: dict[str, Any] = {
    "api_keys": KEY,
    "callbacks_enabled": True,
    "callback_secret": SECRET,
    "callback_internal_hosts": "127.0.0.1",
    "callback_timeout_s": 5.0,
    "callback_max_attempts": 3,
    "callback_retry_backoff_s": 0.05,
}

ClientFactory = Callable[..., TestClient]


@pytest.fixture
def make_client(make_settings: SettingsFactory) -> Iterator[ClientFactory]:
    """``make_client(**api_overrides)``: an app with callbacks on and an in-process worker."""
    opened: list[TestClient] = []

    def factory(**api: Any) -> TestClient:
        settings = make_settings(api={**CALLBACK_SETTINGS, **api}, queue={"reaper_interval_s": 1.0})
        client = TestClient(create_app(settings))
        client.__enter__()
        opened.append(client)
        return client

    yield factory
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: ClientFactory) -> TestClient:
    return make_client()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver().start()
    yield started
    started.stop()


def make_receiver(request: pytest.FixtureRequest, script: list[Any]) -> Receiver:
    started = Receiver(script).start()
    request.addfinalizer(started.stop)
    return started


def upload_with_callback(client: TestClient, url: str, data: bytes = LOGO) -> Any:
    return client.post(
        "/v1/designs",
        files={"file": ("logo.png", data)},
        data={"callback_url": url},
        headers=HEADERS,
    )


def wait_for_callback(
    client: TestClient, design_id: str, *, timeout_s: float = 60
) -> dict[str, Any]:
    """Poll until the design's callback is delivered or given up; the design body then."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(f"/v1/designs/{design_id}", headers=HEADERS).json()
        if body["callback"]["status"] in ("delivered", "failed"):
            return body
        time.sleep(0.05)
    raise AssertionError(f"the callback of design {design_id} did not finish: {body}")


def sent_event(received: Any) -> dict[str, Any]:
    """The POSTed JSON, after checking its signature over the raw body."""
    signature = received.headers["X-Stolentee-Signature"]
    assert verify_signature(SECRET, signature, received.body), signature
    event: dict[str, Any] = json.loads(received.body)
    return event


def without_callback(design: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in design.items() if key != "callback"}


# --- accepting the URL ---------------------------------------------------------------------------


def test_callbacks_are_refused_while_disabled(make_settings: SettingsFactory) -> None:
    settings = make_settings(api={"api_keys": KEY, "callback_internal_hosts": "127.0.0.1"})
    with TestClient(create_app(settings)) as client:
        response = upload_with_callback(client, "http://127.0.0.1:9/hook")
        assert response.status_code == 400
        assert response.json()["errors"][0]["code"] == "callbacks_disabled"
        assert client.get("/v1/designs", headers=HEADERS).json()["data"] == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://10.0.0.7/hook", "must use https"),
        ("https://10.0.0.7/hook", "10.0.0.7, a private address"),
        ("https://169.254.169.254/latest/meta-data/", "a link-local address"),
        ("https://[::ffff:169.254.169.254]/x", "a link-local address"),
        ("https://localhost/hook", "'localhost' resolves to"),
        ("https://127.0.0.2/hook", "a loopback address"),  # only 127.0.0.1 is internal
        ("http://hooks.example.com/hook", "must use https"),
        ("https://hooks.example.org/hook", "not in the callback URL allow-list"),
        ("ftp://hooks.example.com/hook", "Only http and https callback URLs"),
        ("https://user:pw@hooks.example.com/hook", "user name or password"),
        ("not a url", "whitespace"),
        ("https://hooks.example.com/" + "x" * 3000, "longer than 2048"),
    ],
)
def test_unsafe_callback_urls_are_refused(
    make_client: ClientFactory, url: str, reason: str
) -> None:
    client = make_client(
        callback_allowed_hosts="*.example.com,localhost,10.0.0.7,127.0.0.2,169.254.169.254,"
        "[::ffff:169.254.169.254]"
    )
    response = upload_with_callback(client, url)
    assert response.status_code == 400, response.text
    error = response.json()["errors"][0]
    assert error["code"] == "invalid_callback_url"
    assert reason in error["detail"]
    assert client.get("/v1/designs", headers=HEADERS).json()["data"] == []


def test_an_internal_host_never_opens_the_metadata_address(make_client: ClientFactory) -> None:
    client = make_client(callback_internal_hosts="169.254.169.254,127.0.0.1")
    response = upload_with_callback(client, "http://169.254.169.254/latest/meta-data/")
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "invalid_callback_url"
    assert "link-local" in response.json()["errors"][0]["detail"]


def test_the_accepted_url_is_stored_and_echoed(client: TestClient, receiver: Receiver) -> None:
    response = upload_with_callback(client, receiver.url("/hooks/café?order=7"))
    assert response.status_code == 202, response.text
    callback = response.json()["callback"]
    assert callback["url"] == receiver.url("/hooks/caf%C3%A9?order=7")  # normalised once
    assert callback["status"] in ("waiting", "pending", "delivered")
    assert upload(client).json()["callback"] is None  # no callback_url: no callback section


# --- delivery ------------------------------------------------------------------------------------


def test_a_finished_design_is_announced_once_signed(client: TestClient, receiver: Receiver) -> None:
    design_id = upload_with_callback(client, receiver.url()).json()["id"]
    final = wait_for_callback(client, design_id)

    assert final["status"] == "done"
    callback = final["callback"]
    assert callback["status"] == "delivered"
    assert callback["attempts"] == 1 and callback["last_error"] is None
    assert callback["delivered_at"] is not None
    assert len(receiver.requests) == 1
    received = receiver.requests[0]
    assert received.path == "/hooks/stolentee"
    assert received.headers["Content-Type"] == "application/json"
    assert received.headers["X-Stolentee-Event"] == "design.done"
    delivery_id = received.headers["X-Stolentee-Delivery"]
    assert received.headers["Idempotency-Key"] == delivery_id and len(delivery_id) == 32
    assert received.headers["Host"] == f"127.0.0.1:{receiver.port}"
    event = sent_event(received)
    assert set(event) == {"event", "design", "sent_at"}
    assert event["event"] == "design.done"
    assert without_callback(event["design"]) == without_callback(final)
    assert event["design"]["cutout"]["url"].startswith("/assets/cutouts/")
    assert event["design"]["callback"] == {
        "url": receiver.url(),
        "status": "pending",  # the attempt being made
        "attempts": 1,
        "last_error": None,
        "delivered_at": None,
    }
    # The signature covers the exact bytes with this secret: any change breaks it.
    signature = received.headers["X-Stolentee-Signature"]
    assert not verify_signature(SECRET, signature, received.body + b" ")
    assert not verify_signature("another-secret-0123456789", signature, received.body)


def test_a_failed_design_is_announced_as_failed(client: TestClient, receiver: Receiver) -> None:
    design_id = store_unusable_design(client, callback_url=receiver.url())  # fails at once
    final = wait_for_callback(client, design_id)

    assert final["status"] == "failed" and "InvalidImageError" in final["error"]
    assert final["callback"]["status"] == "delivered"
    assert len(receiver.requests) == 1
    assert receiver.requests[0].headers["X-Stolentee-Event"] == "design.failed"
    event = sent_event(receiver.requests[0])
    assert event["event"] == "design.failed"
    assert without_callback(event["design"]) == without_callback(final)


def test_server_errors_are_retried_until_delivered(
    client: TestClient, request: pytest.FixtureRequest
) -> None:
    receiver = make_receiver(request, [500, 503, 200])
    design_id = upload_with_callback(client, receiver.url()).json()["id"]
    final = wait_for_callback(client, design_id)

    assert final["callback"]["status"] == "delivered"
    assert final["callback"]["attempts"] == 3
    assert final["callback"]["last_error"] is None
    assert len(receiver.requests) == 3
    deliveries = {received.headers["X-Stolentee-Delivery"] for received in receiver.requests}
    assert len(deliveries) == 1  # one delivery id, so the receiver can drop duplicates
    events = [sent_event(received) for received in receiver.requests]  # each freshly signed
    assert [event["design"]["callback"]["attempts"] for event in events] == [1, 2, 3]
    assert "HTTP 500" in events[1]["design"]["callback"]["last_error"]
    assert "HTTP 503" in events[2]["design"]["callback"]["last_error"]


def test_a_receiver_that_never_answers_is_given_up_on(
    make_client: ClientFactory, request: pytest.FixtureRequest
) -> None:
    client = make_client(callback_timeout_s=0.5)
    receiver = make_receiver(request, [HANG])
    design_id = upload_with_callback(client, receiver.url()).json()["id"]
    final = wait_for_callback(client, design_id)

    assert final["status"] == "done"  # the design does not depend on its callback
    assert final["cutout"] is not None and final["error"] is None
    callback = final["callback"]
    assert callback["status"] == "failed" and callback["attempts"] == 3
    assert "no answer from" in callback["last_error"]
    assert "gave up after 3 attempts" in callback["last_error"]
    assert callback["delivered_at"] is None
    assert len(receiver.requests) == 3


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ((302, "http://127.0.0.1:9/elsewhere"), "redirects are not followed"),
        ((307, "/hooks/other"), "redirects are not followed"),
        (404, "answered HTTP 404"),
    ],
)
def test_redirects_and_client_errors_fail_at_once(
    client: TestClient, request: pytest.FixtureRequest, answer: Any, reason: str
) -> None:
    receiver = make_receiver(request, [answer, 200])
    design_id = upload_with_callback(client, receiver.url()).json()["id"]
    final = wait_for_callback(client, design_id)

    assert final["status"] == "done"
    assert final["callback"]["status"] == "failed"
    assert final["callback"]["attempts"] == 1
    assert reason in final["callback"]["last_error"]
    assert [received.path for received in receiver.requests] == ["/hooks/stolentee"]


def test_a_design_without_callback_url_sends_nothing(
    client: TestClient, receiver: Receiver
) -> None:
    design = wait_for(client, upload(client).json()["id"])
    assert design["callback"] is None
    assert receiver.requests == []


def test_idempotent_replay_shows_the_callback(client: TestClient, receiver: Receiver) -> None:
    first = client.post(
        "/v1/designs",
        files={"file": ("logo.png", LOGO)},
        data={"callback_url": receiver.url()},
        headers={**HEADERS, "Idempotency-Key": "order-7"},
    )
    wait_for_callback(client, first.json()["id"])
    again = client.post(
        "/v1/designs",
        files={"file": ("logo.png", LOGO)},
        data={"callback_url": receiver.url()},
        headers={**HEADERS, "Idempotency-Key": "order-7"},
    )
    assert again.status_code == 200
    assert again.json()["callback"]["status"] == "delivered"
    listed = client.get("/v1/designs", headers=HEADERS).json()["data"]
    assert listed[0]["callback"]["status"] == "delivered"
    assert len(receiver.requests) == 1


# --- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("api", "message"),
    [
        ({"callback_secret": ""}, "STOLENTEE_CALLBACK_SECRET is empty"),
        ({"callback_secret": "short"}, "at least 16 characters"),
        ({"callback_internal_hosts": "", "callback_allowed_hosts": ""}, "no host may receive"),
    ],
)
def test_enabling_callbacks_needs_a_secret_and_a_host(
    make_settings: SettingsFactory, api: dict[str, Any], message: str
) -> None:
    settings = make_settings(api={**CALLBACK_SETTINGS, **api})
    with pytest.raises(ConfigurationError, match=message), TestClient(create_app(settings)):
        pass


def test_a_separate_worker_process_delivers_callbacks(
    make_settings: SettingsFactory, tmp_path: Any, receiver: Receiver
) -> None:
    """The scaled-out shape: the API accepts the URL, a `stolentee worker` process finishes the
    design and delivers its callback (same environment, same secret)."""
    import os
    import signal
    import subprocess
    import sys

    data_dir = tmp_path / "data"
    settings = make_settings(
        service={"data_dir": data_dir}, api=CALLBACK_SETTINGS, queue={"run_worker": False}
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOLENTEE_")}
    env.update(
        STOLENTEE_DATA_DIR=str(data_dir),
        STOLENTEE_WORKER_CONCURRENCY="1",
        STOLENTEE_CALLBACKS_ENABLED="true",
        STOLENTEE_CALLBACK_SECRET=SECRET,
        STOLENTEE_CALLBACK_INTERNAL_HOSTS="127.0.0.1",
    )
    with TestClient(create_app(settings)) as client:
        design_id = upload_with_callback(client, receiver.url()).json()["id"]
        worker = subprocess.Popen(
            [sys.executable, "-m", "stolentee", "worker"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            final = wait_for_callback(client, design_id)
        finally:
            worker.send_signal(signal.SIGTERM)
            output = worker.communicate(timeout=60)[0].decode()
        assert final["callback"]["status"] == "delivered", output
        assert len(receiver.requests) == 1
        assert sent_event(receiver.requests[0])["event"] == "design.done"


@pytest.mark.parametrize("command", ["worker", "serve"])
def test_processes_refuse_to_start_with_callbacks_but_no_secret(
    tmp_path: Any, command: str
) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("STOLENTEE_")}
    env.update(
        STOLENTEE_DATA_DIR=str(tmp_path / "data"),
        STOLENTEE_CALLBACKS_ENABLED="true",
        STOLENTEE_CALLBACK_ALLOWED_HOSTS="shop.example.com",
        PORT="9",  # never bound: the check comes first
    )
    done = subprocess.run(
        [sys.executable, "-m", "stolentee", command],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    output = (done.stdout + done.stderr).decode()
    assert done.returncode == 1, output
    assert "invalid_configuration" in output
    assert "STOLENTEE_CALLBACK_SECRET is empty" in output
