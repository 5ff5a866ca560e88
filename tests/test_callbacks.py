"""Callbacks without the API: signatures, settings, the URL policy and one delivery at a time
against a real receiver on 127.0.0.1 (allowed as an internal host, or reached through a fake
resolver whose answers are vetted like real ones)."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from typing import Any

import pytest

from stolentee.config import ApiSettings
from stolentee.designs.callbacks import (
    CallbackDeliveryError,
    CallbackRejectedError,
    CallbacksDisabledError,
    CallbackSender,
    InvalidCallbackUrlError,
    callback_body,
    sign,
    verify_signature,
)
from stolentee.errors import ConfigurationError
from stolentee.netsafe import internal_address_reason
from tests.fakes.callback_receiver import Receiver

SECRET = "whsec-0123456789abcdef"
NOW = 1_760_000_000


def api_settings(**overrides: Any) -> ApiSettings:
    values: dict[str, Any] = {
        "callbacks_enabled": True,
        "callback_secret": SECRET,
        "callback_internal_hosts": "127.0.0.1,receiver.internal",
        "callback_allowed_hosts": "*.example.com",
        "callback_timeout_s": 5.0,
        **overrides,
    }
    return ApiSettings(**values)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver([200]).start()
    yield started
    started.stop()


def scripted(request: pytest.FixtureRequest, script: list[Any]) -> Receiver:
    started = Receiver(script).start()
    request.addfinalizer(started.stop)
    return started


# --- signatures ----------------------------------------------------------------------------------


def test_a_signature_verifies_within_the_tolerance_only() -> None:
    body = b'{"event":"design.done"}'
    header = sign(SECRET, body, NOW)
    assert header.startswith(f"t={NOW},v1=") and len(header.split("v1=")[1]) == 64
    assert verify_signature(SECRET, header, body, now=NOW)
    assert verify_signature(SECRET.encode(), header, body.decode(), now=NOW + 300)
    assert not verify_signature(SECRET, header, body, now=NOW + 301)  # replayed later
    assert not verify_signature(SECRET, header, body, now=NOW - 301)
    assert verify_signature(SECRET, header, body, tolerance_s=3600, now=NOW + 3000)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        "v1=abc",  # no timestamp
        f"t={NOW}",  # no signature
        f"t=-{NOW},v1=00",
        f"t={NOW}.5,v1=00",
        f"t={NOW},v1=" + "0" * 64,
        f"t={NOW + 1},v1=SIG",  # the signature of another timestamp
        "t=" + "\uff11" * 10 + ",v1=SIG",  # non-ASCII (full-width) digits
    ],
)
def test_bad_signature_headers_are_refused(header: str | None) -> None:
    body = b"{}"
    good = sign(SECRET, body, NOW).split("v1=")[1]
    if header is not None:
        header = header.replace("SIG", good)
    assert not verify_signature(SECRET, header, body, now=NOW)


def test_any_of_several_v1_entries_may_match() -> None:
    body = b"{}"
    good = sign(SECRET, body, NOW).split("v1=")[1]
    assert verify_signature(SECRET, f"t={NOW}, v1={'0' * 64}, v1={good}", body, now=NOW)
    assert not verify_signature("other-secret-0123456", f"t={NOW},v1={good}", body, now=NOW)


def test_the_body_names_the_event_after_the_design_status() -> None:
    from datetime import UTC, datetime

    sent_at = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)
    event, raw = callback_body({"id": "d", "status": "done"}, sent_at=sent_at)
    assert event == "design.done"
    assert json.loads(raw) == {
        "event": "design.done",
        "design": {"id": "d", "status": "done"},
        "sent_at": "2026-12-08T09:00:00+00:00",
    }
    assert callback_body({"status": "failed"}, sent_at=sent_at)[0] == "design.failed"


# --- settings ------------------------------------------------------------------------------------


def test_disabled_callbacks_need_nothing_and_refuse_urls() -> None:
    sender = CallbackSender.from_settings(ApiSettings())
    assert not sender.enabled
    with pytest.raises(CallbacksDisabledError):
        sender.check_url("https://hooks.example.com/x")
    with pytest.raises(CallbackRejectedError, match="disabled"):
        sender.deliver("https://hooks.example.com/x", b"{}", event="design.done", delivery_id="1")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"callback_secret": ""}, "STOLENTEE_CALLBACK_SECRET is empty"),
        ({"callback_secret": "x" * 15}, "at least 16"),
        ({"callback_allowed_hosts": "", "callback_internal_hosts": ""}, "no host may receive"),
    ],
)
def test_enabled_callbacks_need_a_secret_and_a_host(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        CallbackSender.from_settings(api_settings(**overrides))


def test_internal_hosts_must_be_exact() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="exact"):
        api_settings(callback_internal_hosts="*.internal")


def test_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOLENTEE_CALLBACKS_ENABLED", "true")
    monkeypatch.setenv("STOLENTEE_CALLBACK_SECRET", SECRET)
    monkeypatch.setenv("STOLENTEE_CALLBACK_ALLOWED_HOSTS", "Shop.Example.com, *.hooks.example")
    monkeypatch.setenv("STOLENTEE_CALLBACK_INTERNAL_HOSTS", "shop.railway.internal")
    monkeypatch.setenv("STOLENTEE_CALLBACK_MAX_ATTEMPTS", "7")
    monkeypatch.setenv("STOLENTEE_CALLBACK_RETRY_BACKOFF_S", "2.5")
    api = ApiSettings()
    assert api.callback_hosts == ("shop.example.com", "*.hooks.example")
    assert api.callback_internal == ("shop.railway.internal",)
    sender = CallbackSender.from_settings(api)
    assert (sender.max_attempts, sender.retry_backoff_s) == (7, 2.5)
    assert sender.policy.https_only and sender.policy.max_redirects == 0


# --- the URL policy ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("192.168.0.10", True),
        ("100.64.1.1", True),  # CGNAT: some PaaS private networks
        ("fd12:3456::1", True),
        ("::1", True),
        ("::ffff:10.0.0.1", True),
        ("93.184.215.14", True),
        ("169.254.169.254", False),  # cloud metadata
        ("fe80::1", False),
        ("::ffff:169.254.169.254", False),
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 form of 169.254.169.254
        ("0.0.0.0", False),
        ("0.1.2.3", False),
        ("::", False),
        ("224.0.0.1", False),
        ("ff02::1", False),
    ],
)
def test_what_an_internal_host_may_resolve_to(address: str, allowed: bool) -> None:
    reason = internal_address_reason(ipaddress.ip_address(address))
    assert (reason is None) is allowed, reason


def test_check_url_vets_resolved_addresses_of_public_hosts() -> None:
    answers = {"hooks.example.com": ["93.184.215.14"], "evil.example.com": ["10.0.0.1"]}
    sender = CallbackSender.from_settings(api_settings(), resolver=lambda host, port: answers[host])
    assert sender.check_url("HTTPS://Hooks.Example.com./x?y=1") == "https://hooks.example.com/x?y=1"
    with pytest.raises(
        InvalidCallbackUrlError, match=r"resolves to 10\.0\.0\.1, a private address"
    ):
        sender.check_url("https://evil.example.com/x")


def test_check_url_refuses_a_host_that_does_not_resolve() -> None:
    def nowhere(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    sender = CallbackSender.from_settings(api_settings(), resolver=nowhere)
    with pytest.raises(InvalidCallbackUrlError, match="must resolve"):
        sender.check_url("https://gone.example.com/x")


# --- delivery ------------------------------------------------------------------------------------


def test_delivery_goes_to_the_vetted_address_with_the_real_host_name(
    receiver: Receiver,
) -> None:
    lookups: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    sender = CallbackSender.from_settings(api_settings(), resolver=resolver)
    sender.clock = lambda: float(NOW)
    url = f"http://receiver.internal:{receiver.port}/hook"
    answer = sender.deliver(url, b'{"a":1}', event="design.done", delivery_id="d" * 32)

    assert answer.status_code == 200
    assert lookups == ["receiver.internal"]  # one lookup per delivery, then the vetted address
    received = receiver.requests[0]
    assert received.headers["Host"] == f"receiver.internal:{receiver.port}"
    assert received.headers["Connection"] == "close"
    assert received.headers["User-Agent"] == "stolentee-callback/1"
    assert received.headers["X-Stolentee-Signature"] == sign(SECRET, b'{"a":1}', NOW)
    assert received.body == b'{"a":1}'


def test_a_public_host_that_rebinds_to_a_private_address_is_refused(receiver: Receiver) -> None:
    """Accepted at upload (public answer), refused at delivery (the name now says 127.0.0.1)."""
    answers = iter([["93.184.215.14"], ["127.0.0.1"]])
    sender = CallbackSender.from_settings(api_settings(), resolver=lambda h, p: next(answers))
    url = sender.check_url(f"https://hooks.example.com:{receiver.port}/hook")
    with pytest.raises(CallbackRejectedError, match=r"127\.0\.0\.1, a loopback address"):
        sender.deliver(url, b"{}", event="design.done", delivery_id="1")
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("answer", "error", "message"),
    [
        (500, CallbackDeliveryError, "HTTP 500"),
        (502, CallbackDeliveryError, "HTTP 502"),
        (429, CallbackDeliveryError, "HTTP 429"),
        (408, CallbackDeliveryError, "HTTP 408"),
        (400, CallbackRejectedError, "HTTP 400"),
        (410, CallbackRejectedError, "HTTP 410"),
        ((301, "https://elsewhere.example.com/"), CallbackRejectedError, "not followed"),
    ],
)
def test_answers_are_sorted_into_retry_or_give_up(
    request: pytest.FixtureRequest, answer: Any, error: type[Exception], message: str
) -> None:
    receiver = scripted(request, [answer])
    sender = CallbackSender.from_settings(api_settings())
    with pytest.raises(error, match=message):
        sender.deliver(receiver.url(), b"{}", event="design.done", delivery_id="1")
    assert len(receiver.requests) == 1


def test_nothing_listening_is_worth_retrying() -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sender = CallbackSender.from_settings(api_settings())
    with pytest.raises(CallbackDeliveryError, match="Could not connect"):
        sender.deliver(f"http://127.0.0.1:{port}/", b"{}", event="design.done", delivery_id="1")
