"""The provider chain: order, premium routing, fallback, breakers, probes, statistics.

Most tests use in-memory providers and hand-moved clocks; the last ones run a real chain
(our removal service behind a fault-injecting proxy, then the in-process engine).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from PIL import Image

from stolentee.config import EngineSettings, RemovalSettings
from stolentee.errors import ConfigurationError, InvalidImageError
from stolentee.removal.base import (
    Foreground,
    ImageKind,
    OutputSize,
    RemovalEvent,
    RemovalOptions,
    RemovalResult,
    credits_for,
)
from stolentee.removal.engine import RemovalEngine
from stolentee.removal.providers.breaker import BreakerState
from stolentee.removal.providers.chain import NoProviderAvailableError, ProviderChain, build_chain
from stolentee.removal.providers.errors import (
    ProviderError,
    ProviderOutOfCreditsError,
    ProviderRejectedError,
)
from stolentee.removal.providers.http import ProbeResult, build_http_client
from stolentee.removal.providers.rembg_service import RembgServiceRemover
from stolentee.removal.providers.removebg import RemoveBgRemover
from tests.fakes.clocks import FakeWallClock
from tests.fakes.faultproxy import FaultProxy
from tests.removal.conftest import composite, draw_logo, encode
from tests.removal.test_breaker import FakeClock
from tests.removal.test_remote import API_KEY, REMOVE_PATH, start_removal_server

IMAGE = encode(Image.new("RGB", (200, 100), (255, 255, 255)))  # 0.02 MP
IMAGE_MP = 200 * 100 / 1e6
FULL = (1000, 700)  # a result worth 1 credit
PREVIEW = (500, 400)  # 0.2 MP: 0.25 credit

Behaviour = Exception | Callable[[], Exception | None] | None


@dataclass
class FakeRemover:
    """A provider that answers from a script: ``None`` succeeds, an exception is raised."""

    name: str
    script: list[Behaviour] = field(default_factory=list)
    credits: float = 0.0
    size: tuple[int, int] = FULL
    calls: int = 0

    def remove(self, data: bytes, options: RemovalOptions) -> RemovalResult:
        self.calls += 1
        behaviour = self.script.pop(0) if self.script else None
        if callable(behaviour) and not isinstance(behaviour, Exception):
            behaviour = behaviour()
        if behaviour is not None:
            raise behaviour
        return RemovalResult(
            data=b"cutout",
            content_type="image/png",
            width=self.size[0],
            height=self.size[1],
            kind=ImageKind.PHOTO,
            method=f"fake:{self.name}",
            foreground=Foreground(0, 0, 1, 1),
            input_width=200,
            input_height=100,
            provider="local" if self.name == "local" else self.name,
            credits_charged=self.credits,
            model=options.model or "none",
        )


@dataclass
class ProbingFake(FakeRemover):
    probes: list[ProbeResult] = field(default_factory=list)
    probed: threading.Event = field(default_factory=threading.Event)

    def probe(self) -> ProbeResult:
        self.probed.set()
        return self.probes.pop(0) if self.probes else ProbeResult(True, "ok", 1.0)


class ListSink:
    def __init__(self) -> None:
        self.events: list[RemovalEvent] = []

    def record(self, event: RemovalEvent) -> None:
        self.events.append(event)


class BrokenSink:
    def record(self, event: RemovalEvent) -> None:
        raise RuntimeError("database down")


def failure(kind: Any = "server_error", provider: str = "rembg-service") -> ProviderError:
    return ProviderError(f"{provider} at http://internal:8080 failed", provider=provider, kind=kind)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def wall() -> FakeWallClock:
    return FakeWallClock()


@pytest.fixture
def sink() -> ListSink:
    return ListSink()


@pytest.fixture
def make_chain(
    clock: FakeClock, wall: FakeWallClock, sink: ListSink
) -> Callable[..., ProviderChain]:
    def factory(*providers: Any, stats: Any = sink, **settings: Any) -> ProviderChain:
        values = {"breaker_failures": 2, "breaker_cooldown_s": 15.0, **settings}
        return ProviderChain(
            providers=list(providers),
            settings=RemovalSettings(**values),
            stats=stats,
            clock=clock,
            wall_clock=wall,
        )

    return factory


def event(provider: str, wall: FakeWallClock, **fields: Any) -> RemovalEvent:
    values: dict[str, Any] = {
        "provider": provider,
        "ok": True,
        "failure_kind": None,
        "latency_ms": 0.0,
        "megapixels": IMAGE_MP,
        "credits_charged": 0.0,
        "credits_avoided": 0.0,
        "premium": False,
        "at": wall.now,
        # the fake providers answer photos; a failed attempt has no image kind
        "image_kind": "photo" if fields.get("ok", True) else None,
        **fields,
    }
    return RemovalEvent(**values)


def without_latency(events: list[RemovalEvent]) -> list[RemovalEvent]:
    assert all(item.latency_ms >= 0 for item in events)
    return [RemovalEvent(**{**vars_of(item), "latency_ms": 0.0}) for item in events]


def vars_of(item: RemovalEvent) -> dict[str, Any]:
    return {name: getattr(item, name) for name in RemovalEvent.__dataclass_fields__}


# --- order ----------------------------------------------------------------------------------------


def test_first_provider_serves_and_reports_credits_avoided(
    make_chain: Callable[..., ProviderChain], sink: ListSink, wall: FakeWallClock
) -> None:
    local, paid = FakeRemover("local"), FakeRemover("removebg", credits=1.0)
    chain = make_chain(local, paid)
    result = chain.remove(IMAGE, RemovalOptions())
    assert result.provider == "local" and (local.calls, paid.calls) == (1, 0)
    assert without_latency(sink.events) == [event("local", wall, credits_avoided=1.0)]


def test_preview_result_avoids_a_quarter_credit(
    make_chain: Callable[..., ProviderChain], sink: ListSink, wall: FakeWallClock
) -> None:
    chain = make_chain(FakeRemover("rembg-service", size=PREVIEW))
    result = chain.remove(IMAGE, RemovalOptions(size=OutputSize.PREVIEW))
    assert result.provider == "rembg-service"
    assert without_latency(sink.events) == [
        event("rembg-service", wall, credits_avoided=credits_for(OutputSize.PREVIEW, *PREVIEW))
    ]
    assert sink.events[0].credits_avoided == 0.25


def test_premium_goes_to_removebg_first_when_enabled(
    make_chain: Callable[..., ProviderChain], sink: ListSink, wall: FakeWallClock
) -> None:
    local, paid = FakeRemover("local"), FakeRemover("removebg", credits=1.0)
    chain = make_chain(local, paid, premium_uses_removebg=True)
    assert chain.order(premium=True) == ("removebg", "local")
    assert chain.order(premium=False) == ("local", "removebg")
    result = chain.remove(IMAGE, RemovalOptions(premium=True))
    assert result.provider == "removebg" and result.credits_charged == 1.0
    assert (local.calls, paid.calls) == (0, 1)
    assert without_latency(sink.events) == [
        event("removebg", wall, credits_charged=1.0, premium=True)
    ]
    chain.remove(IMAGE, RemovalOptions())  # not premium: the normal order
    assert (local.calls, paid.calls) == (1, 1)


def test_a_premium_request_naming_a_local_model_is_served_here_first(
    make_chain: Callable[..., ProviderChain], sink: ListSink, wall: FakeWallClock
) -> None:
    """STOLENTEE_PREMIUM_MODEL (the quality tier) installed: Remove.bg is only the fallback,
    and the premium removal is counted as credits saved."""
    local, paid = FakeRemover("local"), FakeRemover("removebg", credits=1.0)
    chain = make_chain(local, paid, premium_uses_removebg=True)
    assert chain.order(premium=True, model="quality") == ("local", "removebg")
    result = chain.remove(IMAGE, RemovalOptions(premium=True, model="quality"))
    assert result.provider == "local" and (local.calls, paid.calls) == (1, 0)
    (recorded,) = sink.events
    assert recorded.premium and recorded.credits_charged == 0 and recorded.credits_avoided > 0
    assert recorded.model == "quality"  # the statistics per model know who served it


def test_premium_keeps_the_normal_order_when_disabled(
    make_chain: Callable[..., ProviderChain],
) -> None:
    local, paid = FakeRemover("local"), FakeRemover("removebg")
    chain = make_chain(local, paid, premium_uses_removebg=False)
    assert chain.order(premium=True) == ("local", "removebg")
    assert chain.remove(IMAGE, RemovalOptions(premium=True)).provider == "local"
    only_local = make_chain(FakeRemover("local"), premium_uses_removebg=True)
    assert only_local.order(premium=True) == ("local",)


# --- fallback -------------------------------------------------------------------------------------


def test_falls_back_on_a_provider_failure(
    make_chain: Callable[..., ProviderChain], sink: ListSink, wall: FakeWallClock
) -> None:
    service = FakeRemover("rembg-service", script=[failure("timeout")])
    paid = FakeRemover("removebg", credits=1.0)
    chain = make_chain(service, paid)
    result = chain.remove(IMAGE, RemovalOptions())
    assert result.provider == "removebg"
    assert without_latency(sink.events) == [
        event("rembg-service", wall, ok=False, failure_kind="timeout"),
        event("removebg", wall, credits_charged=1.0),
    ]
    assert chain.breaker("rembg-service").snapshot().consecutive_failures == 1


def test_engine_crash_falls_back_as_internal(
    make_chain: Callable[..., ProviderChain], sink: ListSink
) -> None:
    local = FakeRemover("local", script=[RuntimeError("onnxruntime exploded")])
    chain = make_chain(local, FakeRemover("removebg"))
    assert chain.remove(IMAGE, RemovalOptions()).provider == "removebg"
    assert [(e.provider, e.ok, e.failure_kind) for e in sink.events] == [
        ("local", False, "internal"),
        ("removebg", True, None),
    ]
    assert "onnxruntime exploded" in (chain.breaker("local").snapshot().last_error or "")


def test_image_errors_of_the_engine_propagate_without_fallback(
    make_chain: Callable[..., ProviderChain], sink: ListSink
) -> None:
    local = FakeRemover("local", script=[InvalidImageError("truncated")])
    paid = FakeRemover("removebg")
    chain = make_chain(local, paid)
    with pytest.raises(InvalidImageError):
        chain.remove(IMAGE, RemovalOptions())
    assert paid.calls == 0
    assert [(e.provider, e.ok, e.failure_kind) for e in sink.events] == [
        ("local", False, "rejected")
    ]
    snapshot = chain.breaker("local").snapshot()
    assert snapshot.state is BreakerState.CLOSED and snapshot.consecutive_failures == 0


def test_remote_rejection_propagates_without_fallback_or_breaker_change(
    make_chain: Callable[..., ProviderChain], sink: ListSink
) -> None:
    rejected = ProviderRejectedError(
        "the image is too large",
        provider="rembg-service",
        http_status=400,
        remote_code="resolution_too_high",
    )
    service = FakeRemover("rembg-service", script=[failure(), rejected])
    paid = FakeRemover("removebg")
    chain = make_chain(service, paid, breaker_failures=2)
    chain.remove(IMAGE, RemovalOptions())  # one failure: falls back to removebg
    with pytest.raises(ProviderRejectedError) as caught:
        chain.remove(IMAGE, RemovalOptions())
    assert caught.value.code == "resolution_too_high"
    assert paid.calls == 1  # only the first request's fallback
    snapshot = chain.breaker("rembg-service").snapshot()
    assert snapshot.state is BreakerState.CLOSED and snapshot.consecutive_failures == 1
    assert [e.failure_kind for e in sink.events] == ["server_error", None, "rejected"]


def test_out_of_credits_forces_the_breaker_open_and_alerts(
    make_chain: Callable[..., ProviderChain],
    sink: ListSink,
    caplog: pytest.LogCaptureFixture,
    clock: FakeClock,
) -> None:
    paid = FakeRemover(
        "removebg",
        script=[ProviderOutOfCreditsError("removebg answered HTTP 402", provider="removebg")],
    )
    local = FakeRemover("local")
    chain = make_chain(paid, local, breaker_failures=5)
    with caplog.at_level(logging.ERROR, logger="stolentee.removal.providers.chain"):
        assert chain.remove(IMAGE, RemovalOptions()).provider == "local"
    assert any(
        record.levelno == logging.ERROR and "Remove.bg is out of credits" in record.message
        for record in caplog.records
    )
    breaker = chain.breaker("removebg")
    snapshot = breaker.snapshot()
    assert snapshot.state is BreakerState.OPEN and snapshot.forced
    assert snapshot.reason is not None and "out_of_credits" in snapshot.reason
    assert [(e.provider, e.failure_kind) for e in sink.events] == [
        ("removebg", "out_of_credits"),
        ("local", None),
    ]
    # Skipped from now on, at no cost, for the whole forced period.
    clock.advance(15.0 * 10)
    chain.remove(IMAGE, RemovalOptions())
    assert (paid.calls, local.calls) == (1, 2)


# --- breakers -------------------------------------------------------------------------------------


def test_open_breaker_skips_a_dead_provider(
    make_chain: Callable[..., ProviderChain], sink: ListSink, clock: FakeClock
) -> None:
    service = FakeRemover("rembg-service", script=[failure("connect")] * 10)
    local = FakeRemover("local")
    chain = make_chain(service, local, breaker_failures=2)
    for _ in range(2):
        assert chain.remove(IMAGE, RemovalOptions()).provider == "local"
    assert chain.breaker("rembg-service").state is BreakerState.OPEN
    for _ in range(3):
        assert chain.remove(IMAGE, RemovalOptions()).provider == "local"
    assert service.calls == 2 and local.calls == 5
    assert [e.provider for e in sink.events if not e.ok] == ["rembg-service"] * 2

    # After the cooldown: one trial; it fails, so the breaker reopens.
    clock.advance(15)
    assert chain.breaker("rembg-service").state is BreakerState.HALF_OPEN
    chain.remove(IMAGE, RemovalOptions())
    assert service.calls == 3
    assert chain.breaker("rembg-service").state is BreakerState.OPEN
    chain.remove(IMAGE, RemovalOptions())
    assert service.calls == 3


def test_half_open_trial_success_closes(
    make_chain: Callable[..., ProviderChain], clock: FakeClock
) -> None:
    service = FakeRemover("rembg-service", script=[failure(), failure()])
    chain = make_chain(service, FakeRemover("local"), breaker_failures=2)
    chain.remove(IMAGE, RemovalOptions())
    chain.remove(IMAGE, RemovalOptions())
    clock.advance(15)
    assert chain.remove(IMAGE, RemovalOptions()).provider == "rembg-service"
    assert chain.breaker("rembg-service").state is BreakerState.CLOSED


def test_no_provider_available_says_when_to_retry(
    make_chain: Callable[..., ProviderChain], clock: FakeClock
) -> None:
    service = FakeRemover("rembg-service", script=[failure()] * 5)
    chain = make_chain(service, breaker_failures=1, breaker_cooldown_s=15)
    with pytest.raises(NoProviderAvailableError) as caught:
        chain.remove(IMAGE, RemovalOptions())
    error = caught.value
    assert error.status_code == 503 and error.code == "no_removal_provider"
    assert error.headers == {"Retry-After": "15"}
    assert "rembg-service: server_error" in error.detail
    assert "http://" not in error.detail  # no internal URL reaches the client
    assert isinstance(error.__cause__, ProviderError)

    clock.advance(10)
    with pytest.raises(NoProviderAvailableError) as caught:
        chain.remove(IMAGE, RemovalOptions())
    assert caught.value.headers["Retry-After"] == "5"
    assert "skipped (circuit open)" in caught.value.detail
    assert service.calls == 1

    clock.advance(4.5)
    with pytest.raises(NoProviderAvailableError) as caught:
        chain.remove(IMAGE, RemovalOptions())
    assert caught.value.headers["Retry-After"] == "1"  # 0.5 s, rounded up


def test_retry_after_is_at_least_one_second(make_chain: Callable[..., ProviderChain]) -> None:
    chain = make_chain(
        FakeRemover("rembg-service", script=[failure()]),
        FakeRemover("removebg", script=[failure("timeout", "removebg")]),
        breaker_failures=3,
    )
    with pytest.raises(NoProviderAvailableError) as caught:
        chain.remove(IMAGE, RemovalOptions())
    assert caught.value.headers["Retry-After"] == "1"
    assert "rembg-service: server_error; removebg: timeout" in caught.value.detail


# --- statistics -----------------------------------------------------------------------------------


def test_a_failing_stats_sink_does_not_fail_the_request(
    make_chain: Callable[..., ProviderChain], caplog: pytest.LogCaptureFixture
) -> None:
    chain = make_chain(FakeRemover("local"), stats=BrokenSink())
    with caplog.at_level(logging.WARNING, logger="stolentee.removal.providers.chain"):
        assert chain.remove(IMAGE, RemovalOptions()).provider == "local"
    assert any("statistics" in record.message for record in caplog.records)


def test_without_a_sink_nothing_is_recorded(make_chain: Callable[..., ProviderChain]) -> None:
    assert make_chain(FakeRemover("local"), stats=None).remove(IMAGE, RemovalOptions())


def test_unreadable_input_fails_before_any_provider(
    make_chain: Callable[..., ProviderChain], sink: ListSink
) -> None:
    local = FakeRemover("local")
    with pytest.raises(InvalidImageError):
        make_chain(local).remove(b"\x89PNG\r\n\x1a\n truncated", RemovalOptions())
    assert local.calls == 0 and sink.events == []


# --- probes ---------------------------------------------------------------------------------------


def test_good_probe_half_opens_an_open_breaker(
    make_chain: Callable[..., ProviderChain], clock: FakeClock, wall: FakeWallClock
) -> None:
    service = ProbingFake(
        "rembg-service",
        script=[failure(), failure()],
        probes=[ProbeResult(False, "connection refused", 0.5), ProbeResult(True, "ready", 2.0)],
    )
    chain = make_chain(service, FakeRemover("local"), breaker_failures=2)
    chain.remove(IMAGE, RemovalOptions())
    clock.advance(1)
    chain.remove(IMAGE, RemovalOptions())
    assert chain.breaker("rembg-service").state is BreakerState.OPEN
    assert not chain.self_hosted_first_and_healthy()

    chain.probe_now()  # still down
    assert chain.breaker("rembg-service").state is BreakerState.OPEN
    entry = chain.snapshot()[0]
    assert entry["last_probe"] == {
        "ok": False,
        "detail": "connection refused",
        "latency_ms": 0.5,
        "at": wall.now.isoformat(),
    }
    assert entry["state"] == "open" and entry["consecutive_failures"] == 2
    assert entry["retry_in_s"] == 15.0
    assert entry["opened_at"] == wall.now.isoformat()  # opened 0 s ago on both clocks

    wall.advance(5)
    chain.probe_now()  # back: half-open long before the cooldown ends
    assert chain.breaker("rembg-service").state is BreakerState.HALF_OPEN
    assert chain.remove(IMAGE, RemovalOptions()).provider == "rembg-service"
    assert chain.breaker("rembg-service").state is BreakerState.CLOSED
    assert chain.self_hosted_first_and_healthy()


def test_probe_of_an_account_without_credits_keeps_it_off(
    make_chain: Callable[..., ProviderChain],
) -> None:
    paid = ProbingFake(
        "removebg",
        script=[ProviderOutOfCreditsError("402", provider="removebg")],
        probes=[
            ProbeResult(True, "account ok, 0 credits", 3.0, credits=0.0),
            ProbeResult(True, "account ok, 500 credits", 3.0, credits=500.0),
        ],
    )
    chain = make_chain(paid, FakeRemover("local"))
    chain.remove(IMAGE, RemovalOptions())
    chain.probe_now()
    assert chain.breaker("removebg").state is BreakerState.OPEN
    chain.probe_now()  # topped up
    assert chain.breaker("removebg").state is BreakerState.HALF_OPEN
    assert chain.remove(IMAGE, RemovalOptions()).provider == "removebg"
    assert chain.breaker("removebg").state is BreakerState.CLOSED


def test_snapshot_and_health_of_the_chain(
    make_chain: Callable[..., ProviderChain], wall: FakeWallClock
) -> None:
    service = ProbingFake("rembg-service", probes=[ProbeResult(False, "down", 1.0)])
    paid = ProbingFake("removebg")
    chain = make_chain(service, paid)
    assert chain.self_hosted_first_and_healthy()  # not probed yet, breaker closed
    chain.probe_now()
    assert not chain.self_hosted_first_and_healthy()  # its last probe failed
    entries = chain.snapshot()
    assert [(e["name"], e["kind"], e["state"]) for e in entries] == [
        ("rembg-service", "self-hosted", "closed"),
        ("removebg", "paid", "closed"),
    ]
    assert entries[1]["last_probe"]["ok"] is True
    assert entries[1]["opened_at"] is None and entries[1]["retry_in_s"] is None

    paid_first = make_chain(FakeRemover("removebg"), FakeRemover("local"))
    assert not paid_first.self_hosted_first_and_healthy()


def test_probe_thread_runs_and_stops(make_chain: Callable[..., ProviderChain]) -> None:
    service = ProbingFake("rembg-service")
    chain = make_chain(service, FakeRemover("local"), health_probe_interval_s=0.05)
    chain.start_probes()
    try:
        assert service.probed.wait(10), "the probe thread did not probe"
    finally:
        chain.stop()
    assert chain.snapshot()[0]["last_probe"]["ok"] is True
    assert not any(t.name == "stolentee-provider-probes" for t in threading.enumerate())


def test_a_raising_probe_is_a_failed_probe(make_chain: Callable[..., ProviderChain]) -> None:
    class Exploding(ProbingFake):
        def probe(self) -> ProbeResult:
            raise RuntimeError("bug")

    chain = make_chain(Exploding("rembg-service"))
    chain.probe_now()
    probe = chain.snapshot()[0]["last_probe"]
    assert probe["ok"] is False and "RuntimeError: bug" in probe["detail"]


# --- building -------------------------------------------------------------------------------------


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with build_http_client(RemovalSettings()) as shared:
        yield shared


def test_build_chain_follows_the_settings(client: httpx.Client) -> None:
    engine = FakeRemover("local")
    default = build_chain(RemovalSettings(), engine=engine, http_client=client)
    assert default.provider_names == ("local",)

    full = RemovalSettings(rembg_endpoint="http://rembg:8080", removebg_api_key="k")
    chain = build_chain(full, engine=engine, http_client=client)
    assert chain.provider_names == ("rembg-service", "removebg")

    explicit = RemovalSettings(
        providers="local,removebg,rembg-service",
        rembg_endpoint="http://rembg:8080",
        removebg_api_key="k",
    )
    chain = build_chain(explicit, engine=engine, http_client=client)
    assert chain.provider_names == ("local", "removebg", "rembg-service")
    assert chain.order() == ("local", "removebg", "rembg-service")


def test_build_chain_names_the_missing_variable(client: httpx.Client) -> None:
    engine = FakeRemover("local")
    with pytest.raises(ConfigurationError, match="REMBG_ENDPOINT"):
        build_chain(RemovalSettings(providers="rembg-service"), engine=engine, http_client=client)
    with pytest.raises(ConfigurationError, match="REMOVEBG_API_KEY"):
        build_chain(RemovalSettings(providers="local,removebg"), engine=engine, http_client=client)


def test_chain_refuses_duplicates_and_emptiness() -> None:
    with pytest.raises(ConfigurationError, match="once"):
        ProviderChain(
            providers=[FakeRemover("local"), FakeRemover("local")], settings=RemovalSettings()
        )
    with pytest.raises(ConfigurationError, match="at least one"):
        ProviderChain(providers=[], settings=RemovalSettings())


# --- a real chain: our removal service behind a proxy, then the in-process engine ---------------


@pytest.fixture(scope="module")
def removal_server(
    engine_settings: EngineSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    server = start_removal_server(engine_settings, tmp_path_factory.mktemp("router-service"))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def proxy(removal_server: str) -> Iterator[FaultProxy]:
    with FaultProxy(removal_server) as running:
        yield running


def test_real_chain_falls_back_to_the_engine_and_recovers_after_a_probe(
    proxy: FaultProxy,
    engine: RemovalEngine,
    client: httpx.Client,
    clock: FakeClock,
    wall: FakeWallClock,
    sink: ListSink,
) -> None:
    settings = RemovalSettings(
        rembg_endpoint=proxy.url,
        rembg_api_key=API_KEY,
        providers="rembg-service,local",
        max_attempts=2,
        retry_backoff_s=0,
        breaker_failures=2,
    )
    chain = build_chain(
        settings,
        engine=engine,
        http_client=client,
        stats=sink,
        clock=clock,
        wall_clock=wall,
        sleep=lambda _: None,
    )
    logo = encode(composite(draw_logo(), (255, 255, 255)))
    options = RemovalOptions()

    first = chain.remove(logo, options)
    assert first.provider == "rembg-service" and proxy.count(REMOVE_PATH) == 1

    proxy.drop(path_prefix=REMOVE_PATH)  # removals die, health probes still pass
    for _ in range(2):
        assert chain.remove(logo, options).provider == "local"
    assert proxy.count(REMOVE_PATH) == 1 + 2 * 2  # two attempts per request
    assert chain.breaker("rembg-service").state is BreakerState.OPEN
    for _ in range(2):
        assert chain.remove(logo, options).provider == "local"
    assert proxy.count(REMOVE_PATH) == 5  # skipped: the count stopped growing

    proxy.pass_through()
    chain.probe_now()
    assert proxy.count("/readyz") == 1
    assert chain.breaker("rembg-service").state is BreakerState.HALF_OPEN
    assert chain.remove(logo, options).provider == "rembg-service"
    assert chain.breaker("rembg-service").state is BreakerState.CLOSED
    assert proxy.count(REMOVE_PATH) == 6

    mp = 600 * 400 / 1e6
    avoided = credits_for(OutputSize.FULL, 600, 400)
    logo_kind = {"image_kind": "graphic"}  # the real engine and service see a logo
    ok_service = event("rembg-service", wall, megapixels=mp, credits_avoided=avoided, **logo_kind)
    ok_local = event("local", wall, megapixels=mp, credits_avoided=avoided, **logo_kind)
    dropped = event("rembg-service", wall, ok=False, failure_kind="connect", megapixels=mp)
    assert without_latency(sink.events) == [
        ok_service,
        dropped,
        ok_local,
        dropped,
        ok_local,
        ok_local,
        ok_local,
        ok_service,
    ]
    assert isinstance(chain.provider("rembg-service"), RembgServiceRemover)


def test_real_out_of_credits_falls_through_to_the_engine(
    proxy: FaultProxy,
    engine: RemovalEngine,
    client: httpx.Client,
    clock: FakeClock,
    sink: ListSink,
) -> None:
    proxy.status(402, body={"errors": [{"title": "Insufficient credits", "code": "x"}]})
    settings = RemovalSettings(
        removebg_api_url=proxy.url, removebg_api_key=API_KEY, providers="removebg,local"
    )
    chain = build_chain(settings, engine=engine, http_client=client, stats=sink, clock=clock)
    assert isinstance(chain.provider("removebg"), RemoveBgRemover)
    logo = encode(composite(draw_logo(), (255, 255, 255)))
    for _ in range(3):
        assert chain.remove(logo, RemovalOptions()).provider == "local"
    assert proxy.count("/removebg") == 1  # the breaker keeps Remove.bg off after the 402
    assert [e.failure_kind for e in sink.events if not e.ok] == ["out_of_credits"]
    # A probe of an account that reports no credits does not let it back on...
    clock.advance(1)
    proxy.status(200, body={"data": {"attributes": {"credits": {"total": 0}}}})
    chain.probe_now()
    assert chain.breaker("removebg").state is BreakerState.OPEN
    # ... one with credits does.
    proxy.status(200, body={"data": {"attributes": {"credits": {"total": 12}}}})
    chain.probe_now()
    assert chain.breaker("removebg").state is BreakerState.HALF_OPEN
