"""The controller loop: samples in, the backend called for changes, refusals retried."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from stolentee.config import ScalingSettings
from stolentee.scaling.controller import Controller, LogBackend, ScaleBackend
from stolentee.scaling.errors import RailwayApiError
from stolentee.scaling.policy import API, WORKER, Policy, Sample
from stolentee.scaling.railway import RailwayBackend, RailwayClient
from stolentee.scaling.sources import MemorySource
from tests.scaling.conftest import LocalServer
from tests.scaling.test_railway import ENV_ID, IDS, PATH, TOKEN, FakeRailway

MINUTE = 60.0


@pytest.fixture
def policy() -> Policy:
    return Policy.from_settings(ScalingSettings(), worker_concurrency=2)


class FlakyBackend(LogBackend):
    """Refuses the first ``failures`` changes."""

    name = "flaky"

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def set_replicas(self, service: str, replicas: int, *, reason: str) -> None:
        if self.failures:
            self.failures -= 1
            raise RailwayApiError("serviceInstanceUpdate: Railway's API answered HTTP 503")
        super().set_replicas(service, replicas, reason=reason)


# --- the backend contract: every ScaleBackend, the same behaviour ---------------------------

BackendFactory = Callable[[dict[str, int]], ScaleBackend]


@pytest.fixture(params=["log", "railway"])
def make_backend(request: pytest.FixtureRequest) -> Iterator[BackendFactory]:
    """``make_backend({service: replicas})``: the dry-run backend, or Railway's (against a local
    server that checks every GraphQL request is the documented one), starting at ``replicas``."""
    built: list[ScaleBackend] = []

    def factory(replicas: dict[str, int]) -> ScaleBackend:
        backend: ScaleBackend
        if request.param == "log":
            backend = LogBackend(replicas)
        else:
            server: LocalServer = request.getfixturevalue("server")
            server.responder = FakeRailway({IDS[name]: n for name, n in replicas.items()})
            client = RailwayClient(url=server.url(PATH), token=TOKEN, timeout_s=5)
            backend = RailwayBackend(client=client, environment_id=ENV_ID, service_ids=IDS)
        built.append(backend)
        return backend

    yield factory
    for backend in built:
        backend.close()


def test_a_backend_reads_back_what_it_set(make_backend: BackendFactory) -> None:
    backend = make_backend({API: 2})
    assert backend.current_replicas(API) == 2
    assert backend.current_replicas(WORKER) is None  # never set: the backend cannot tell
    backend.set_replicas(WORKER, 3, reason="contract")
    assert backend.current_replicas(WORKER) == 3
    backend.set_replicas(WORKER, 1, reason="contract")
    assert (backend.current_replicas(WORKER), backend.current_replicas(API)) == (1, 2)


def test_sustained_cpu_scales_the_api_once_through_the_backend(
    policy: Policy, make_backend: BackendFactory
) -> None:
    ticks = [{API: Sample(at_s=i * MINUTE, cpu_percent=88.0)} for i in range(16)]
    backend = make_backend({API: 1, WORKER: 1})
    controller = Controller(policy=policy, source=MemorySource(ticks), backend=backend)
    assert controller.run(interval_s=0, max_ticks=16) == 16
    assert backend.current_replicas(API) == 2
    assert controller.state is not None and controller.state.replicas(API) == 2


def test_the_dry_run_records_each_change_with_its_reason(policy: Policy) -> None:
    ticks = [{API: Sample(at_s=i * MINUTE, cpu_percent=88.0)} for i in range(16)]
    backend = LogBackend()
    Controller(policy=policy, source=MemorySource(ticks), backend=backend).run(
        interval_s=0, max_ticks=16
    )
    assert backend.changes == [(API, 2, "CPU 88% > 70% for 15m (window 15m)")]


def test_start_uses_the_replicas_the_backend_reports(
    policy: Policy, make_backend: BackendFactory
) -> None:
    backend = make_backend({API: 3})
    controller = Controller(policy=policy, source=MemorySource(), backend=backend)
    state = controller.start()
    assert (state.replicas(API), state.replicas(WORKER)) == (3, 1)


def test_a_refused_change_is_retried_at_the_next_tick(policy: Policy) -> None:
    source = MemorySource(
        [{WORKER: Sample(at_s=0, queue_depth=50)}, {WORKER: Sample(at_s=30, queue_depth=55)}]
    )
    backend = FlakyBackend(failures=1)
    controller = Controller(policy=policy, source=source, backend=backend)
    (first,) = controller.tick()
    assert (first.decision.desired, first.applied) == (3, False)
    assert first.error == "serviceInstanceUpdate: Railway's API answered HTTP 503"
    assert controller.state is not None and controller.state.replicas(WORKER) == 1
    (second,) = controller.tick()
    assert (second.decision.current, second.decision.desired, second.applied) == (1, 3, True)
    assert backend.replicas == {WORKER: 3}


def test_controller_drives_railway_end_to_end(server: LocalServer, policy: Policy) -> None:
    fake = FakeRailway({IDS["api"]: 2, IDS["worker"]: 1})
    server.responder = fake
    client = RailwayClient(url=server.url(PATH), token=TOKEN, timeout_s=5)
    backend = RailwayBackend(client=client, environment_id=ENV_ID, service_ids=IDS)
    source = MemorySource(
        [{API: Sample(at_s=0, cpu_percent=40.0), WORKER: Sample(at_s=0, queue_depth=65)}]
    )
    controller = Controller(policy=policy, source=source, backend=backend)
    try:
        state = controller.start()
        assert (state.replicas(API), state.replicas(WORKER)) == (2, 1)
        outcomes = controller.tick()
    finally:
        backend.close()
    assert [(o.decision.service, o.decision.desired, o.applied) for o in outcomes] == [
        (API, 2, False),  # 40% on two replicas: hold (one replica would be at 80%)
        (WORKER, 4, True),
    ]
    assert fake.replicas[IDS["worker"]] == 4
    operations = [r.json()["operationName"] for r in server.requests]
    assert operations == ["serviceInstance", "serviceInstance", "serviceInstanceUpdate"]


def test_an_unreadable_count_at_start_falls_back_to_the_minimum(
    server: LocalServer, policy: Policy
) -> None:
    server.responder = FakeRailway()
    client = RailwayClient(url=server.url(PATH), token=TOKEN, timeout_s=5)
    backend = RailwayBackend(
        client=client, environment_id="another-env", service_ids=IDS
    )  # every call answers "Service instance not found"
    controller = Controller(policy=policy, source=MemorySource(), backend=backend)
    try:
        state = controller.start()
    finally:
        backend.close()
    assert (state.replicas(API), state.replicas(WORKER)) == (1, 1)
