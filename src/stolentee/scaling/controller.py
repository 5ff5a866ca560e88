"""The autoscaling controller: read samples, apply the policy, act through a backend, repeat.

Backends (:class:`ScaleBackend`): :class:`LogBackend` (dry run, the default: decisions are only
logged) and :class:`~stolentee.scaling.railway.RailwayBackend` (Railway's GraphQL API). The
Kubernetes equivalent of the policy is not a backend: ``stolentee autoscale manifests`` writes an
HPA and a KEDA ``ScaledObject`` that let the cluster apply the same rules itself.

A change the backend refuses is not recorded: the service keeps its previous state, so the same
decision comes again at the next evaluation (and is retried) while the pressure lasts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from stolentee.errors import StolenteeError
from stolentee.scaling.policy import Decision, Policy, PolicyState, evaluate, initial_state
from stolentee.scaling.sources import SampleSource

log = logging.getLogger(__name__)


class ScaleBackend(Protocol):
    """Reads and sets the replica count of a service."""

    name: str

    def current_replicas(self, service: str) -> int | None:
        """The replicas ``service`` has now, or ``None`` when the backend cannot tell."""
        ...

    def set_replicas(self, service: str, replicas: int, *, reason: str) -> None:
        """Give ``service`` ``replicas`` replicas; raise a StolenteeError when refused."""
        ...

    def close(self) -> None: ...


class LogBackend:
    """Dry run: logs each change and remembers it (nothing else is touched)."""

    name = "log"

    def __init__(self, replicas: Mapping[str, int] | None = None) -> None:
        self.replicas: dict[str, int] = dict(replicas or {})
        self.changes: list[tuple[str, int, str]] = []

    def current_replicas(self, service: str) -> int | None:
        return self.replicas.get(service)

    def set_replicas(self, service: str, replicas: int, *, reason: str) -> None:
        log.info("autoscale (dry run): %s -> %d replicas: %s", service, replicas, reason)
        self.replicas[service] = replicas
        self.changes.append((service, replicas, reason))

    def close(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Outcome:
    """A decision and what became of it (``applied`` only for changes the backend accepted)."""

    decision: Decision
    applied: bool
    error: str | None = None


class Controller:
    """Applies ``policy`` to the samples of ``source`` through ``backend``."""

    def __init__(self, *, policy: Policy, source: SampleSource, backend: ScaleBackend) -> None:
        self.policy = policy
        self.source = source
        self.backend = backend
        self.state: PolicyState | None = None

    def start(self) -> PolicyState:
        """Initial state: each service at the count the backend reports, else at its minimum."""
        known: dict[str, int | None] = {}
        for service in self.policy.services:
            try:
                known[service] = self.backend.current_replicas(service)
            except StolenteeError as exc:
                log.warning("autoscale: could not read the replicas of %s: %s", service, exc)
                known[service] = None
        self.state = initial_state(self.policy, known)
        return self.state

    def tick(self) -> list[Outcome]:
        """One evaluation: read, decide, apply the changes."""
        state = self.state if self.state is not None else self.start()
        samples = self.source.read()
        new_state, decisions = evaluate(self.policy, state, samples)
        outcomes: list[Outcome] = []
        for decision in decisions:
            if not decision.changed:
                outcomes.append(Outcome(decision=decision, applied=False))
                continue
            try:
                self.backend.set_replicas(
                    decision.service, decision.desired, reason=decision.reason
                )
            except StolenteeError as exc:
                log.error(
                    "autoscale: %s -> %d refused by %s: %s",
                    decision.service,
                    decision.desired,
                    self.backend.name,
                    exc.detail,
                )
                new_state = new_state.with_service(
                    decision.service, state.services[decision.service]
                )
                outcomes.append(Outcome(decision=decision, applied=False, error=exc.detail))
            else:
                outcomes.append(Outcome(decision=decision, applied=True))
        self.state = new_state
        return outcomes

    def run(
        self,
        *,
        interval_s: float,
        stop: threading.Event | None = None,
        max_ticks: int | None = None,
        on_tick: Callable[[list[Outcome]], None] | None = None,
    ) -> int:
        """Evaluate every ``interval_s`` until ``stop`` is set or ``max_ticks`` ran; returns the
        number of evaluations."""
        stop = stop or threading.Event()
        ticks = 0
        while not stop.is_set() and (max_ticks is None or ticks < max_ticks):
            outcomes = self.tick()
            ticks += 1
            if on_tick is not None:
                on_tick(outcomes)
            if max_ticks is not None and ticks >= max_ticks:
                break
            stop.wait(interval_s)
        return ticks
