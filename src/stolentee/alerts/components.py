"""Each watched component's status now: ``pass``, ``warn`` or ``fail``, with a one-line detail.

The components are those of ``/health/detailed`` a shop owner wants to hear about: the database,
the storage (its bucket or directory, and the free-space floor), the queue's backlog, every
removal provider of the chain (its breaker and last probe), and Remove.bg's credits. A check that
raises is a ``fail`` with the error as its detail, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from stolentee.config import AlertSettings
from stolentee.db import migrate
from stolentee.db.engine import Database
from stolentee.errors import StolenteeError
from stolentee.jobs.figures import QueueFigures
from stolentee.jobs.queue import JobQueue
from stolentee.removal.providers.chain import ProviderChain
from stolentee.storage.base import Storage
from stolentee.storage.diskspace import DiskSpace

Status = Literal["pass", "warn", "fail"]
STATUSES: tuple[Status, ...] = ("pass", "warn", "fail")
# The seed's database target: statements under 100 ms. A round trip slower than that warns.
SLOW_DATABASE_MS = 100.0
# Remove.bg's balance below this many credits warns (a day of a small shop's premium removals).
LOW_CREDITS = 50.0


@dataclass(frozen=True, slots=True)
class ComponentHealth:
    name: str
    status: Status
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "detail": self.detail}


class ComponentSource(Protocol):
    """Whatever tells the watcher each component's status now."""

    def check(self) -> list[ComponentHealth]: ...


@dataclass(frozen=True, slots=True)
class Components:
    """What one process can check; a part it does not have is not a component."""

    database: Database
    settings: AlertSettings
    storage: Storage | None = None
    disk: DiskSpace | None = None
    queue: JobQueue | None = None
    providers: ProviderChain | None = None

    def check(self) -> list[ComponentHealth]:
        checks: list[tuple[str, Callable[[], tuple[Status, str]]]] = [("database", self._database)]
        if self.storage is not None:
            checks.append(("storage", self._storage))
        if self.queue is not None:
            checks.append(("queue", self._queue))
        results = [_guarded(name, check) for name, check in checks]
        if self.providers is not None:
            results.extend(provider_components(self.providers))
        return results

    def _database(self) -> tuple[Status, str]:
        latency_ms = self.database.ping()
        problem = migrate.schema_problem(self.database)
        if problem is not None:
            return "fail", problem
        if latency_ms > SLOW_DATABASE_MS:
            return "warn", f"a round trip took {latency_ms:.0f} ms (target < 100 ms)"
        return "pass", f"a round trip took {latency_ms:.1f} ms"

    def _storage(self) -> tuple[Status, str]:
        assert self.storage is not None
        self.storage.check()
        if self.disk is not None:
            low = [volume.name for volume in self.disk.figures() if volume.low]
            if low:
                return "fail", f"free disk space below the floor on: {', '.join(low)}"
        return "pass", f"{self.storage.name} answers"

    def _queue(self) -> tuple[Status, str]:
        assert self.queue is not None
        health = queue_component(self.queue.figures(), self.settings)
        return health.status, health.detail


def queue_component(figures: QueueFigures, settings: AlertSettings) -> ComponentHealth:
    """``queue`` from figures already read: warn on a backlog, fail on a job waiting too long."""
    summary = (
        f"{figures.depth} queued, {figures.in_flight} in flight, oldest ready job "
        f"{figures.oldest_queued_age_s:.0f} s"
    )
    if figures.oldest_queued_age_s > settings.queue_max_wait_s:
        return ComponentHealth("queue", "fail", summary)
    if figures.depth > settings.queue_backlog:
        return ComponentHealth("queue", "warn", summary)
    return ComponentHealth("queue", "pass", summary)


def provider_components(chain: ProviderChain) -> list[ComponentHealth]:
    """``removal:<provider>`` for each provider of the chain (fail while its breaker is open or
    its last probe failed), and ``removebg:credits`` when Remove.bg is one of them."""
    results = []
    for entry in chain.snapshot():
        name, probe = entry["name"], entry["last_probe"]
        status: Status = "pass"
        detail = "breaker closed" + ("" if probe is None else f"; probe: {probe['detail']}")
        if entry["out_of_credits"]:
            detail = "out of credits (its own component); " + detail
        elif entry["state"] != "closed":
            status = "fail"
            detail = f"breaker {entry['state']}: {entry['last_error'] or entry['reason']}"
        elif probe is not None and not probe["ok"]:
            status, detail = "fail", f"probe failed: {probe['detail']}"
        results.append(ComponentHealth(f"removal:{name}", status, detail))
        if name == "removebg":
            results.append(_credits(entry))
    return results


def _credits(entry: dict[str, Any]) -> ComponentHealth:
    credits = entry["credits"]
    if entry["out_of_credits"]:
        return ComponentHealth("removebg:credits", "fail", "Remove.bg answered 402: no credits")
    if credits is None:
        return ComponentHealth("removebg:credits", "pass", "balance not reported yet")
    if credits < LOW_CREDITS:
        return ComponentHealth("removebg:credits", "warn", f"{credits:g} credits left")
    return ComponentHealth("removebg:credits", "pass", f"{credits:g} credits left")


def _guarded(name: str, check: Callable[[], tuple[Status, str]]) -> ComponentHealth:
    try:
        status, detail = check()
    except StolenteeError as exc:
        return ComponentHealth(name, "fail", exc.detail)
    except Exception as exc:  # noqa: BLE001 - a failing check is a status, not a crash
        return ComponentHealth(name, "fail", f"{type(exc).__name__}: {exc}")
    return ComponentHealth(name, status, detail)
