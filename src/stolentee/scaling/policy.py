"""The autoscaling policy: samples in, replica decisions out. Pure: no I/O, no clock.

CPU, memory and queue depth above their thresholds for their windows scale a service up; calm
for the stabilisation window, with room to spare at the smaller size, scales it down; always
within the replica bounds. The rules, their settings and what "sustained" means are in
``docs/scaling.md`` ("How the autoscaling policy decides"). State is explicit: :func:`decide`
takes a :class:`ServiceState` and returns the next one with its :class:`Decision`, so tests and
the simulation replay series deterministically.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stolentee.config import ScalingSettings

API = "api"
WORKER = "worker"


@dataclass(frozen=True, slots=True)
class Sample:
    """What one service looked like at ``at_s`` (seconds on any clock that moves forward).

    ``cpu_percent`` and ``memory_percent`` are averages over the service's replicas, relative to
    one replica's vCPUs and memory; ``queue_depth`` and ``in_flight`` count jobs (the whole
    queue, not per replica). ``None``: not known.
    """

    at_s: float
    cpu_percent: float | None = None
    memory_percent: float | None = None
    queue_depth: int | None = None
    in_flight: int | None = None


@dataclass(frozen=True, slots=True)
class ServiceRules:
    """The rules for one service."""

    min_replicas: int = 1
    max_replicas: int = 5
    cpu_percent: float = 70.0
    cpu_window_s: float = 900.0
    memory_percent: float = 80.0
    memory_window_s: float = 600.0
    queue_per_replica: int | None = None  # queue-depth targeting (the worker service)
    concurrency_per_replica: int | None = None  # jobs one replica runs at once (worker)
    step_up: int = 1
    step_down: int = 1
    scale_down_stabilisation_s: float = 300.0
    max_sample_gap_s: float = 180.0

    def __post_init__(self) -> None:
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ValueError(
                f"need 1 <= min_replicas <= max_replicas; got {self.min_replicas}, "
                f"{self.max_replicas}"
            )
        if self.step_up < 1 or self.step_down < 1:
            raise ValueError("step sizes must be at least 1")
        if self.queue_per_replica is not None and self.queue_per_replica < 1:
            raise ValueError("queue_per_replica must be at least 1")
        if self.concurrency_per_replica is not None and self.concurrency_per_replica < 1:
            raise ValueError("concurrency_per_replica must be at least 1")
        windows = (
            self.cpu_window_s,
            self.memory_window_s,
            self.scale_down_stabilisation_s,
        )
        if min(windows) < 0 or self.max_sample_gap_s <= 0:
            raise ValueError("windows must be >= 0 and max_sample_gap_s > 0")

    def clamp(self, replicas: int) -> int:
        return max(self.min_replicas, min(self.max_replicas, replicas))

    def queue_target(self, depth: int) -> int | None:
        """Replicas the queue depth asks for (bounded), or ``None`` without queue targeting."""
        if self.queue_per_replica is None:
            return None
        return self.clamp(math.ceil(depth / self.queue_per_replica))


@dataclass(frozen=True, slots=True)
class Policy:
    """The rules of every scaled service, by service name."""

    services: Mapping[str, ServiceRules]

    def rules(self, service: str) -> ServiceRules:
        try:
            return self.services[service]
        except KeyError:
            raise KeyError(f"the policy has no rules for service {service!r}") from None

    @classmethod
    def from_settings(
        cls, settings: ScalingSettings, *, worker_concurrency: int | None = None
    ) -> Policy:
        """The policy of the settings, for the services they scale."""

        def rules(queue: int | None, concurrency: int | None) -> ServiceRules:
            return ServiceRules(
                min_replicas=settings.min_replicas,
                max_replicas=settings.max_replicas,
                cpu_percent=float(settings.cpu_percent),
                cpu_window_s=float(settings.cpu_window_s),
                memory_percent=float(settings.memory_percent),
                memory_window_s=float(settings.memory_window_s),
                queue_per_replica=queue,
                concurrency_per_replica=concurrency,
                step_up=settings.up_step,
                step_down=settings.down_step,
                scale_down_stabilisation_s=float(settings.down_stabilisation_s),
                max_sample_gap_s=float(settings.max_sample_gap_s),
            )

        services = {
            name: rules(settings.queue_per_worker, worker_concurrency)
            if name == WORKER
            else rules(None, None)
            for name in settings.scaled_services
        }
        return cls(services=services)


@dataclass(frozen=True, slots=True)
class ServiceState:
    """Where one service stands: its replicas and the windows in progress."""

    replicas: int
    cpu_high_since: float | None = None
    memory_high_since: float | None = None
    calm_since: float | None = None
    last_change_at: float | None = None
    last_sample_at: float | None = None


@dataclass(frozen=True, slots=True)
class PolicyState:
    """The state of every scaled service."""

    services: Mapping[str, ServiceState] = field(default_factory=dict)

    def replicas(self, service: str) -> int:
        return self.services[service].replicas

    def with_service(self, service: str, state: ServiceState) -> PolicyState:
        return PolicyState(services={**self.services, service: state})


@dataclass(frozen=True, slots=True)
class Decision:
    """The replicas a service should have after a sample, and why."""

    service: str
    at_s: float
    current: int
    desired: int
    reason: str

    @property
    def changed(self) -> bool:
        return self.desired != self.current

    @property
    def direction(self) -> str:
        if self.desired > self.current:
            return "up"
        if self.desired < self.current:
            return "down"
        return "hold"


def initial_state(policy: Policy, replicas: Mapping[str, int | None] | None = None) -> PolicyState:
    """Every service at its known replica count, or at its minimum when unknown."""
    known = replicas or {}
    services = {}
    for name, rules in policy.services.items():
        count = known.get(name)
        services[name] = ServiceState(replicas=count if count is not None else rules.min_replicas)
    return PolicyState(services=services)


def evaluate(
    policy: Policy, state: PolicyState, samples: Mapping[str, Sample]
) -> tuple[PolicyState, list[Decision]]:
    """One evaluation: a decision for each service that has a sample."""
    decisions: list[Decision] = []
    services = dict(state.services)
    for name, rules in policy.services.items():
        sample = samples.get(name)
        if sample is None:
            continue
        current = services.get(name) or ServiceState(replicas=rules.min_replicas)
        services[name], decision = decide(rules, current, sample, service=name)
        decisions.append(decision)
    return PolicyState(services=services), decisions


def replay(
    rules: ServiceRules,
    samples: Iterable[Sample],
    *,
    replicas: int | None = None,
    service: str = "",
) -> list[Decision]:
    """Every decision for a series of samples of one service (tests, what-if)."""
    state = ServiceState(replicas=replicas if replicas is not None else rules.min_replicas)
    decisions = []
    for sample in samples:
        state, decision = decide(rules, state, sample, service=service)
        decisions.append(decision)
    return decisions


def decide(
    rules: ServiceRules, state: ServiceState, sample: Sample, *, service: str = ""
) -> tuple[ServiceState, Decision]:
    """The next state and the decision for one new sample."""
    t = sample.at_s
    broken = state.last_sample_at is not None and (
        t <= state.last_sample_at or t - state.last_sample_at > rules.max_sample_gap_s
    )
    cpu_high = sample.cpu_percent is not None and sample.cpu_percent > rules.cpu_percent
    memory_high = sample.memory_percent is not None and sample.memory_percent > rules.memory_percent
    cpu_since = _run_start(state.cpu_high_since, cpu_high, t, broken)
    memory_since = _run_start(state.memory_high_since, memory_high, t, broken)
    current = state.replicas
    base = replace(
        state, cpu_high_since=cpu_since, memory_high_since=memory_since, last_sample_at=t
    )

    def outcome(new: ServiceState, desired: int, reason: str) -> tuple[ServiceState, Decision]:
        return new, Decision(
            service=service, at_s=t, current=current, desired=desired, reason=reason
        )

    # Out of bounds (changed by hand, or new bounds): back inside at once.
    if current != rules.clamp(current):
        desired = rules.clamp(current)
        bound = "below the minimum" if desired > current else "above the maximum"
        return outcome(
            _changed(base, desired, t), desired, f"{current} replicas: {bound} of {desired}"
        )

    # Scale-up pressure: the queue at once, CPU and memory once sustained for their window.
    queue_target = (
        rules.queue_target(sample.queue_depth) if sample.queue_depth is not None else None
    )
    wanted = current
    reasons: list[str] = []
    waiting: list[str] = []
    if queue_target is not None and queue_target > current:
        wanted = max(wanted, queue_target)
        reasons.append(
            f"queue depth {sample.queue_depth} > {rules.queue_per_replica} per worker "
            f"x {current}: {queue_target} wanted"
        )
    for label, high, since, value, threshold, window in (
        ("CPU", cpu_high, cpu_since, sample.cpu_percent, rules.cpu_percent, rules.cpu_window_s),
        (
            "memory",
            memory_high,
            memory_since,
            sample.memory_percent,
            rules.memory_percent,
            rules.memory_window_s,
        ),
    ):
        if not high or since is None or value is None:
            continue
        held = t - since
        text = f"{label} {value:.0f}% > {threshold:.0f}% for {duration(held)}"
        if held >= window:
            wanted = max(wanted, current + rules.step_up)
            reasons.append(f"{text} (window {duration(window)})")
        else:
            waiting.append(f"{text} of {duration(window)}")
    pressure = cpu_high or memory_high or (queue_target is not None and queue_target > current)

    if wanted > current:
        desired = rules.clamp(wanted)
        if desired > current:
            new = _changed(base, desired, t)
            return outcome(new, desired, "; ".join(reasons))
        return outcome(
            replace(base, calm_since=None),
            current,
            f"at the maximum of {rules.max_replicas}: " + "; ".join(reasons),
        )
    if pressure:
        return outcome(replace(base, calm_since=None), current, "; ".join(waiting) or "pressure")

    # No pressure: scale down once calm for the stabilisation window, if the rest can cope.
    target = max(rules.min_replicas, current - rules.step_down)
    if target == current:
        return outcome(replace(base, calm_since=None), current, f"at the minimum of {current}")
    blocker = _down_blocker(rules, sample, current, target)
    calm_since = (
        None if blocker else (t if state.calm_since is None or broken else state.calm_since)
    )
    base = replace(base, calm_since=calm_since)
    if blocker:
        return outcome(base, current, blocker)
    assert calm_since is not None
    calm_for = t - calm_since
    since_change = math.inf if state.last_change_at is None else t - state.last_change_at
    stabilisation = rules.scale_down_stabilisation_s
    if calm_for >= stabilisation and since_change >= stabilisation:
        new = _changed(base, target, t, calm=True)
        return outcome(
            new,
            target,
            f"no pressure for {duration(calm_for)} (stabilisation {duration(stabilisation)})",
        )
    return outcome(
        base,
        current,
        f"calm for {duration(calm_for)} of {duration(stabilisation)} before scaling down",
    )


def _run_start(since: float | None, high: bool, t: float, broken: bool) -> float | None:
    """Start time of the current run of high samples."""
    if not high:
        return None
    if since is None or broken:
        return t
    return since


def _changed(state: ServiceState, replicas: int, t: float, *, calm: bool = False) -> ServiceState:
    """The state after a change at ``t``: every window starts again from ``t`` (pressure that
    goes on counts from the change, at the new size)."""
    return replace(
        state,
        replicas=replicas,
        cpu_high_since=None if state.cpu_high_since is None else t,
        memory_high_since=None if state.memory_high_since is None else t,
        calm_since=t if calm else None,
        last_change_at=t,
    )


def _down_blocker(rules: ServiceRules, sample: Sample, current: int, target: int) -> str | None:
    """Why ``target`` replicas could not carry the current load, or ``None`` if they could."""
    known = False
    factor = current / target
    if sample.cpu_percent is not None:
        known = True
        projected = sample.cpu_percent * factor
        if projected > rules.cpu_percent:
            return (
                f"holding: CPU would be {projected:.0f}% on {target} replicas "
                f"(> {rules.cpu_percent:.0f}%)"
            )
    if sample.memory_percent is not None:
        known = True
        projected = sample.memory_percent * factor
        if projected > rules.memory_percent:
            return (
                f"holding: memory would be {projected:.0f}% on {target} replicas "
                f"(> {rules.memory_percent:.0f}%)"
            )
    if rules.queue_per_replica is not None and sample.queue_depth is not None:
        known = True
        if math.ceil(sample.queue_depth / rules.queue_per_replica) > target:
            return f"holding: queue depth {sample.queue_depth} needs more than {target}"
    if rules.concurrency_per_replica is not None and sample.in_flight is not None:
        known = True
        if sample.in_flight > target * rules.concurrency_per_replica:
            return (
                f"holding: {sample.in_flight} jobs in flight exceed {target} x "
                f"{rules.concurrency_per_replica} slots"
            )
    if not known:
        return "holding: no figures to judge a scale-down by"
    return None


def duration(seconds: float) -> str:
    """``14m``, ``15m``, ``1m30s``, ``45s``, ``1h05m``."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes and secs:
        return f"{minutes}m{secs:02d}s"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"
