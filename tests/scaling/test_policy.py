"""The policy on synthetic sample series: sustained windows, stabilisation, bounds, the queue."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stolentee.config import ScalingSettings
from stolentee.scaling.policy import (
    API,
    WORKER,
    Decision,
    Policy,
    Sample,
    ServiceRules,
    ServiceState,
    decide,
    evaluate,
    initial_state,
    replay,
)

MINUTE = 60.0
SEED = ServiceRules()  # the seed's numbers are the defaults
WORKER_RULES = ServiceRules(queue_per_replica=20, concurrency_per_replica=2)


def cpu_series(values: Sequence[float | None], *, start: float = 0.0) -> list[Sample]:
    return [Sample(at_s=start + i * MINUTE, cpu_percent=v) for i, v in enumerate(values)]


def changes(decisions: list[Decision]) -> list[tuple[float, int, int]]:
    return [(d.at_s / MINUTE, d.current, d.desired) for d in decisions if d.changed]


def test_defaults_are_the_seed_triggers() -> None:
    policy = Policy.from_settings(ScalingSettings(), worker_concurrency=2)
    api, worker = policy.rules(API), policy.rules(WORKER)
    assert (api.cpu_percent, api.cpu_window_s) == (70, 15 * 60)
    assert (api.memory_percent, api.memory_window_s) == (80, 10 * 60)
    assert api.scale_down_stabilisation_s == 5 * 60
    assert (api.min_replicas, api.max_replicas, api.step_up, api.step_down) == (1, 5, 1, 1)
    assert api.queue_per_replica is None
    assert (worker.queue_per_replica, worker.concurrency_per_replica) == (20, 2)


def test_settings_flow_into_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOLENTEE_SCALE_CPU_PERCENT", "60")
    monkeypatch.setenv("STOLENTEE_SCALE_CPU_WINDOW_S", "120")
    monkeypatch.setenv("STOLENTEE_SCALE_MAX_REPLICAS", "8")
    monkeypatch.setenv("STOLENTEE_SCALE_UP_STEP", "2")
    monkeypatch.setenv("STOLENTEE_SCALE_QUEUE_PER_WORKER", "10")
    monkeypatch.setenv("STOLENTEE_SCALE_SERVICES", "worker")
    policy = Policy.from_settings(ScalingSettings())
    assert list(policy.services) == [WORKER]
    rules = policy.rules(WORKER)
    assert (rules.cpu_percent, rules.cpu_window_s, rules.max_replicas) == (60, 120, 8)
    assert (rules.step_up, rules.queue_per_replica) == (2, 10)


def test_cpu_high_for_14_minutes_changes_nothing_15_adds_one() -> None:
    decisions = replay(SEED, cpu_series([90.0] * 15))  # minutes 0..14: 14 minutes of high CPU
    assert not changes(decisions)
    assert decisions[-1].reason == "CPU 90% > 70% for 14m of 15m"
    decisions = replay(SEED, cpu_series([90.0] * 16))  # minute 15: sustained for 15 minutes
    assert changes(decisions) == [(15, 1, 2)]
    assert "CPU 90% > 70% for 15m" in decisions[-1].reason


def test_memory_high_for_10_minutes_adds_one() -> None:
    samples = [Sample(at_s=i * MINUTE, memory_percent=85.0) for i in range(11)]
    decisions = replay(SEED, samples)
    assert changes(decisions[:10]) == []
    assert changes(decisions) == [(10, 1, 2)]
    assert decisions[-1].reason.startswith("memory 85% > 80% for 10m")


def test_at_the_threshold_is_not_above_it() -> None:
    assert not changes(replay(SEED, cpu_series([70.0] * 40)))


@pytest.mark.parametrize(
    "interruption",
    [
        pytest.param(50.0, id="one calm sample"),
        pytest.param(None, id="one sample without a CPU figure"),
    ],
)
def test_an_interruption_restarts_the_window(interruption: float | None) -> None:
    values: list[float | None] = [90.0] * 10 + [interruption] + [90.0] * 15
    decisions = replay(SEED, cpu_series(values))
    # high again from minute 11: 15 minutes later is minute 26, beyond this series
    assert not changes(decisions)
    decisions = replay(SEED, cpu_series([*values, 90.0]))
    assert changes(decisions) == [(26, 1, 2)]


def test_a_gap_in_the_samples_restarts_the_window() -> None:
    before = cpu_series([90.0] * 8)
    after = cpu_series([90.0] * 8, start=8 * MINUTE + SEED.max_sample_gap_s + 1)
    assert not changes(replay(SEED, [*before, *after]))


def test_each_further_step_needs_another_full_window() -> None:
    decisions = replay(SEED, cpu_series([95.0] * 61))
    assert changes(decisions) == [(15, 1, 2), (30, 2, 3), (45, 3, 4), (60, 4, 5)]


def test_never_above_the_maximum() -> None:
    decisions = replay(SEED, cpu_series([99.0] * 200))
    assert max(d.desired for d in decisions) == 5
    assert decisions[-1].desired == 5
    assert decisions[-1].reason.startswith("at the maximum of 5")


def test_never_below_the_minimum_and_back_inside_the_bounds_at_once() -> None:
    calm = cpu_series([1.0] * 30)
    assert all(d.desired == 1 for d in replay(SEED, calm))
    assert changes(replay(SEED, calm[:1], replicas=0)) == [(0, 0, 1)]
    assert changes(replay(SEED, calm[:1], replicas=9)) == [(0, 9, 5)]
    rules = ServiceRules(min_replicas=2, max_replicas=3)
    decisions = replay(rules, cpu_series([99.0] * 100 + [1.0] * 100), replicas=2)
    assert {d.desired for d in decisions} == {2, 3}


def test_scale_down_only_after_five_calm_minutes() -> None:
    decisions = replay(SEED, cpu_series([10.0] * 12), replicas=3)
    assert changes(decisions) == [(5, 3, 2), (10, 2, 1)]
    assert decisions[4].reason == "calm for 4m of 5m before scaling down"
    assert decisions[5].reason == "no pressure for 5m (stabilisation 5m)"


def test_no_scale_down_inside_the_stabilisation_window_after_a_scale_up() -> None:
    # sustained CPU scales up at minute 15; load falls at once: the way down waits 5 minutes
    decisions = replay(SEED, cpu_series([90.0] * 16 + [20.0] * 10))
    assert changes(decisions) == [(15, 1, 2), (21, 2, 1)]


def test_pressure_during_the_calm_window_restarts_it() -> None:
    values = [10.0] * 4 + [80.0] + [10.0] * 6
    decisions = replay(SEED, cpu_series(values), replicas=2)
    assert changes(decisions) == [(10, 2, 1)]  # calm again from minute 5


def test_no_scale_down_when_the_rest_would_be_over_the_threshold() -> None:
    # 40% on 2 replicas would be 80% on one: the policy holds instead of flapping
    decisions = replay(SEED, cpu_series([40.0] * 60), replicas=2)
    assert not changes(decisions)
    assert decisions[-1].reason == "holding: CPU would be 80% on 1 replicas (> 70%)"
    memory = [Sample(at_s=i * MINUTE, memory_percent=45.0) for i in range(30)]
    assert not changes(replay(SEED, memory, replicas=2))


def test_queue_depth_over_20_adds_a_worker_at_once() -> None:
    for depth, replicas in ((0, 1), (20, 1), (21, 2), (40, 2), (41, 3), (65, 4), (100, 5)):
        (decision,) = replay(WORKER_RULES, [Sample(at_s=0, queue_depth=depth)])
        assert decision.desired == replicas, depth
    (decision,) = replay(WORKER_RULES, [Sample(at_s=0, queue_depth=5000)])
    assert decision.desired == 5
    (decision,) = replay(WORKER_RULES, [Sample(at_s=0, queue_depth=21)])
    assert decision.reason == "queue depth 21 > 20 per worker x 1: 2 wanted"


def test_the_queue_drains_one_step_per_stabilisation_window() -> None:
    samples = [Sample(at_s=0, queue_depth=100)] + [
        Sample(at_s=i * MINUTE, queue_depth=0, in_flight=0) for i in range(1, 17)
    ]
    decisions = replay(WORKER_RULES, samples)
    # calm from minute 1 (the first sample without pressure), then one step per 5 minutes
    assert changes(decisions) == [(0, 1, 5), (6, 5, 4), (11, 4, 3), (16, 3, 2)]


def test_jobs_in_flight_hold_workers() -> None:
    samples = [Sample(at_s=i * MINUTE, queue_depth=0, in_flight=7) for i in range(20)]
    decisions = replay(WORKER_RULES, samples, replicas=4)
    # 7 jobs in flight do not fit in 3 workers x 2 slots: the 4 workers stay
    assert not changes(decisions)
    assert decisions[-1].reason == "holding: 7 jobs in flight exceed 3 x 2 slots"


def test_without_any_figure_nothing_scales_down() -> None:
    decisions = replay(SEED, [Sample(at_s=i * MINUTE) for i in range(30)], replicas=3)
    assert not changes(decisions)
    assert decisions[-1].reason == "holding: no figures to judge a scale-down by"


def test_samples_going_back_in_time_break_the_windows() -> None:
    state = ServiceState(replicas=1)
    state, _ = decide(SEED, state, Sample(at_s=1000.0, cpu_percent=90.0))
    state, _ = decide(SEED, state, Sample(at_s=500.0, cpu_percent=90.0))
    assert state.cpu_high_since == 500.0


def test_evaluate_decides_per_service_and_skips_services_without_samples() -> None:
    policy = Policy.from_settings(ScalingSettings(), worker_concurrency=2)
    state = initial_state(policy, {API: 2, WORKER: None})
    assert (state.replicas(API), state.replicas(WORKER)) == (2, 1)
    state, decisions = evaluate(policy, state, {WORKER: Sample(at_s=0, queue_depth=45)})
    assert [(d.service, d.current, d.desired) for d in decisions] == [(WORKER, 1, 3)]
    assert state.replicas(API) == 2 and state.replicas(WORKER) == 3


def test_replay_is_deterministic() -> None:
    samples = [
        Sample(at_s=i * 30.0, cpu_percent=(i * 37) % 100, queue_depth=(i * 13) % 70)
        for i in range(300)
    ]
    assert replay(WORKER_RULES, samples) == replay(WORKER_RULES, samples)


def test_rules_are_checked() -> None:
    with pytest.raises(ValueError, match="min_replicas"):
        ServiceRules(min_replicas=3, max_replicas=2)
    with pytest.raises(ValueError, match="step"):
        ServiceRules(step_up=0)


samples_strategy = st.lists(
    st.tuples(
        st.one_of(st.none(), st.floats(0, 100)),
        st.one_of(st.none(), st.floats(0, 100)),
        st.one_of(st.none(), st.integers(0, 150)),
        st.integers(0, 12),
    ),
    min_size=1,
    max_size=120,
)


@settings(max_examples=200, deadline=None)
@given(series=samples_strategy, start=st.integers(0, 7))
def test_invariants_on_any_series(
    series: list[tuple[float | None, float | None, int | None, int]], start: int
) -> None:
    """Whatever the load: within bounds, and every scale-down comes after 5 minutes without
    pressure and at least 5 minutes after the previous change (no flapping)."""
    rules = WORKER_RULES
    samples = [
        Sample(at_s=i * MINUTE, cpu_percent=c, memory_percent=m, queue_depth=q, in_flight=f)
        for i, (c, m, q, f) in enumerate(series)
    ]
    decisions = replay(rules, samples, replicas=start)
    last_change: float | None = None
    for index, decision in enumerate(decisions):
        inside = rules.min_replicas <= decision.current <= rules.max_replicas
        assert rules.min_replicas <= decision.desired <= rules.max_replicas
        if decision.direction == "down" and inside:  # (outside: back within bounds at once)
            assert last_change is None or decision.at_s - last_change >= 300
            window = [
                s
                for s in samples[: index + 1]
                if decision.at_s - s.at_s <= rules.scale_down_stabilisation_s
            ]
            for sample in window:
                assert sample.cpu_percent is None or sample.cpu_percent <= rules.cpu_percent
                assert sample.memory_percent is None or (
                    sample.memory_percent <= rules.memory_percent
                )
                if sample.queue_depth is not None:
                    assert math.ceil(sample.queue_depth / 20) <= decision.current
        if decision.changed:
            last_change = decision.at_s
