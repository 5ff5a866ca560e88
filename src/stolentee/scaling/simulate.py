"""Replaying a load trace through the policy and a queue model of the worker service.

The model, minute by minute:

* the minute's jobs arrive evenly spread over it and wait in one FIFO queue;
* each worker replica runs ``concurrency`` jobs at once (``STOLENTEE_WORKER_CONCURRENCY``); a job
  holds its slot for the trace's ``job_cost_s``; a new replica takes ``startup_s`` before it
  takes jobs; a removed replica finishes the jobs it holds (graceful stop) and takes no more;
* at the end of each minute the worker's sample (busy share of the ready slots as CPU %, queue
  depth, jobs in flight; no memory figure) goes through the policy, exactly as the controller
  does with real samples, and the decision is applied at once;
* after the trace, minutes without arrivals follow until every job is done.

Cost: every replica-minute (draining replicas included) is priced at Railway's RAM and vCPU
prices from the price book (``railway.ram_usd_per_gb_month``, ``railway.vcpu_usd_per_month``,
per 30-day month of minutes) for the replica's size. Railway bills measured use, so a replica
that does not use its whole size costs less: the figure is an upper bound for the replicas the
policy chose. For comparison, the same minutes at the peak replica count all along.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from stolentee.costs.items import MINUTES_PER_MONTH
from stolentee.costs.pricebook import Figure, Pricebook
from stolentee.errors import ConfigurationError
from stolentee.scaling.policy import Decision, Sample, ServiceRules, ServiceState, decide
from stolentee.scaling.trace import TraceMinute

DAYS_PER_MONTH = 30
PERCENTILES = (50, 95, 99)


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    concurrency: int = 2
    startup_s: float = 60.0
    vcpus: float = 1.0
    memory_gb: float = 1.0
    max_drain_minutes: int = 24 * 60
    initial_replicas: int | None = None

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.startup_s < 0 or self.vcpus <= 0 or self.memory_gb <= 0:
            raise ValueError("concurrency >= 1, startup_s >= 0, vcpus and memory_gb > 0")


@dataclass(frozen=True, slots=True)
class MinuteRecord:
    """One simulated minute. ``replicas`` are the worker replicas billed for it (draining ones
    included); ``queue_depth``, ``in_flight`` and ``decision`` are at its end."""

    minute: int
    arrivals: int
    replicas: int
    started: int
    completed: int
    queue_depth: int
    in_flight: int
    cpu_percent: float | None
    decision: Decision


@dataclass(frozen=True, slots=True)
class Cost:
    replica_minutes: int
    ram_gb_minutes: Decimal
    vcpu_minutes: Decimal
    ram_usd: Decimal
    vcpu_usd: Decimal
    ram_price: Figure
    vcpu_price: Figure

    @property
    def total_usd(self) -> Decimal:
        return self.ram_usd + self.vcpu_usd


@dataclass(frozen=True, slots=True)
class SimulationResult:
    trace_minutes: int
    config: SimulationConfig
    rules: ServiceRules
    minutes: list[MinuteRecord]
    waits_s: list[float]  # per job, in arrival order (jobs never started: absent)
    job_times_s: list[float]  # wait + processing, per finished job
    jobs_total: int
    jobs_done: int
    cost: Cost
    static_cost: Cost  # the same minutes at the peak replica count
    changes: list[Decision] = field(default_factory=list)

    @property
    def peak_replicas(self) -> int:
        return max(record.replicas for record in self.minutes)

    @property
    def drain_minutes(self) -> int:
        return len(self.minutes) - self.trace_minutes

    def wait_percentiles(self) -> dict[int, float]:
        return {q: percentile(self.waits_s, q) for q in PERCENTILES}

    def job_time_percentiles(self) -> dict[int, float]:
        return {q: percentile(self.job_times_s, q) for q in PERCENTILES}

    def as_dict(self) -> dict[str, Any]:
        def cost(found: Cost) -> dict[str, Any]:
            return {
                "replica_minutes": found.replica_minutes,
                "ram_gb_minutes": float(found.ram_gb_minutes),
                "vcpu_minutes": float(found.vcpu_minutes),
                "ram_usd": float(round(found.ram_usd, 4)),
                "vcpu_usd": float(round(found.vcpu_usd, 4)),
                "total_usd": float(round(found.total_usd, 4)),
                "per_month_usd": float(round(found.total_usd * DAYS_PER_MONTH, 2)),
            }

        return {
            "trace_minutes": self.trace_minutes,
            "drain_minutes": self.drain_minutes,
            "jobs_total": self.jobs_total,
            "jobs_done": self.jobs_done,
            "concurrency": self.config.concurrency,
            "startup_s": self.config.startup_s,
            "peak_replicas": self.peak_replicas,
            "wait_s": {f"p{q}": round(v, 3) for q, v in self.wait_percentiles().items()},
            "job_time_s": {f"p{q}": round(v, 3) for q, v in self.job_time_percentiles().items()},
            "max_wait_s": round(max(self.waits_s, default=0.0), 3),
            "cost": cost(self.cost),
            "static_peak_cost": cost(self.static_cost),
            "prices": {
                "ram": self.cost.ram_price.as_dict(),
                "vcpu": self.cost.vcpu_price.as_dict(),
            },
            "changes": [
                {
                    "minute": round(change.at_s / 60),
                    "from": change.current,
                    "to": change.desired,
                    "reason": change.reason,
                }
                for change in self.changes
            ],
            "replicas": [record.replicas for record in self.minutes],
            "queue_depth": [record.queue_depth for record in self.minutes],
        }


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class _Replica:
    ready_at: float
    slots: list[float]  # time each slot is free again


def simulate(
    trace: Sequence[TraceMinute],
    rules: ServiceRules,
    config: SimulationConfig,
    pricebook: Pricebook,
) -> SimulationResult:
    """Run the trace through the policy and the queue model (see the module docstring)."""
    if not trace:
        raise ValueError("empty trace")
    start = rules.clamp(config.initial_replicas or rules.min_replicas)
    active = [_Replica(ready_at=0.0, slots=[0.0] * config.concurrency) for _ in range(start)]
    draining: list[_Replica] = []
    state = ServiceState(replicas=start)
    waiting: deque[tuple[float, float, int]] = deque()  # arrival, cost, job index
    running: list[tuple[float, float]] = []  # start, finish
    waits: dict[int, float] = {}
    job_times: list[float] = []
    records: list[MinuteRecord] = []
    changes: list[Decision] = []
    jobs_total = 0
    minute = 0
    while True:
        in_trace = minute < len(trace)
        if not in_trace and (not waiting and not running):
            break
        if minute >= len(trace) + config.max_drain_minutes:
            break
        t0 = minute * 60.0
        t1 = t0 + 60.0
        row = trace[minute] if in_trace else None
        arrivals = row.arrivals if row is not None else 0
        for i in range(arrivals):
            assert row is not None
            waiting.append((t0 + (i + 0.5) * 60.0 / arrivals, row.job_cost_s, jobs_total))
            jobs_total += 1
        draining = [r for r in draining if max(r.slots) > t0]
        billed = len(active) + len(draining)
        started = 0
        while waiting:
            replica, slot, free = _earliest_slot(active)
            if replica is None or free >= t1:
                break
            arrival, cost, index = waiting[0]
            begin = max(arrival, free)
            if begin >= t1:
                break
            waiting.popleft()
            replica.slots[slot] = begin + cost
            running.append((begin, begin + cost))
            waits[index] = begin - arrival
            job_times.append(begin + cost - arrival)
            started += 1
        busy = sum(max(0.0, min(end, t1) - max(begin, t0)) for begin, end in running)
        capacity = sum(
            config.concurrency * max(0.0, t1 - max(t0, r.ready_at)) for r in active
        ) + sum(config.concurrency * 60.0 for r in draining)
        completed = sum(1 for begin, end in running if t0 < end <= t1)
        running = [(begin, end) for begin, end in running if end > t1]
        cpu = min(100.0, 100.0 * busy / capacity) if capacity > 0 else None
        sample = Sample(
            at_s=t1,
            cpu_percent=cpu,
            queue_depth=len(waiting),
            in_flight=len(running),
        )
        state, decision = decide(rules, state, sample, service="worker")
        if decision.desired > len(active):
            for _ in range(decision.desired - len(active)):
                active.append(
                    _Replica(ready_at=t1 + config.startup_s, slots=[0.0] * config.concurrency)
                )
        elif decision.desired < len(active):
            # the newest go first (a replica still starting costs nothing to drop)
            active.sort(key=lambda r: r.ready_at)
            while len(active) > decision.desired:
                draining.append(active.pop())
        if decision.changed:
            changes.append(decision)
        records.append(
            MinuteRecord(
                minute=minute,
                arrivals=arrivals,
                replicas=billed,
                started=started,
                completed=completed,
                queue_depth=len(waiting),
                in_flight=len(running),
                cpu_percent=cpu,
                decision=decision,
            )
        )
        minute += 1
    replica_minutes = sum(record.replicas for record in records)
    peak = max(record.replicas for record in records)
    return SimulationResult(
        trace_minutes=len(trace),
        config=config,
        rules=rules,
        minutes=records,
        waits_s=[waits[index] for index in sorted(waits)],
        job_times_s=job_times,
        jobs_total=jobs_total,
        jobs_done=len(job_times) - len(running),
        cost=compute_cost(pricebook, replica_minutes, config),
        static_cost=compute_cost(pricebook, peak * len(records), config),
        changes=changes,
    )


def _earliest_slot(replicas: list[_Replica]) -> tuple[_Replica | None, int, float]:
    best: tuple[_Replica | None, int, float] = (None, 0, math.inf)
    for replica in replicas:
        for index, free in enumerate(replica.slots):
            available = max(free, replica.ready_at)
            if available < best[2]:
                best = (replica, index, available)
    return best


def compute_cost(pricebook: Pricebook, replica_minutes: int, config: SimulationConfig) -> Cost:
    """Railway usage of ``replica_minutes`` replicas of the configured size, at book prices."""
    railway = pricebook.provider("railway")
    ram = railway.figure("ram_usd_per_gb_month")
    vcpu = railway.figure("vcpu_usd_per_month")
    ram_gb_minutes = Decimal(replica_minutes) * Decimal(str(config.memory_gb))
    vcpu_minutes = Decimal(replica_minutes) * Decimal(str(config.vcpus))
    return Cost(
        replica_minutes=replica_minutes,
        ram_gb_minutes=ram_gb_minutes,
        vcpu_minutes=vcpu_minutes,
        ram_usd=ram_gb_minutes * ram.value / MINUTES_PER_MONTH,
        vcpu_usd=vcpu_minutes * vcpu.value / MINUTES_PER_MONTH,
        ram_price=ram,
        vcpu_price=vcpu,
    )


@dataclass(frozen=True, slots=True)
class HourSummary:
    hour: int
    arrivals: int
    min_replicas: int
    max_replicas: int
    peak_queue: int
    wait_p95_s: float


def hourly(result: SimulationResult) -> list[HourSummary]:
    """Replicas, queue and waits per hour of the simulation (drain hours included)."""
    waits_by_hour: dict[int, list[float]] = {}
    index = 0
    for record in result.minutes:
        for _ in range(record.arrivals):
            if index < len(result.waits_s):
                waits_by_hour.setdefault(record.minute // 60, []).append(result.waits_s[index])
            index += 1
    summaries = []
    for hour in range(math.ceil(len(result.minutes) / 60)):
        chunk = result.minutes[hour * 60 : (hour + 1) * 60]
        summaries.append(
            HourSummary(
                hour=hour,
                arrivals=sum(record.arrivals for record in chunk),
                min_replicas=min(record.replicas for record in chunk),
                max_replicas=max(record.replicas for record in chunk),
                peak_queue=max(record.queue_depth for record in chunk),
                wait_p95_s=percentile(waits_by_hour.get(hour, []), 95),
            )
        )
    return summaries


def plot_simulation(result: SimulationResult, path: str | Path, *, title: str = "") -> Path:
    """A PNG: arrivals and queue depth, worker replicas, and CPU over the simulated minutes.
    Uses matplotlib's Agg canvas (no display); matplotlib is the optional ``plot`` extra."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure as MplFigure
    except ImportError as exc:  # an optional extra: the server does not need it
        raise ConfigurationError(
            "--plot needs matplotlib: pip install 'stolentee[plot]' (make setup installs it)"
        ) from exc

    hours = [record.minute / 60 for record in result.minutes]
    figure = MplFigure(figsize=(11, 7), dpi=100)
    FigureCanvasAgg(figure)
    load, replicas, cpu = figure.subplots(3, 1, sharex=True)
    load.plot(hours, [r.arrivals for r in result.minutes], label="arrivals per minute", lw=0.8)
    load.plot(hours, [r.queue_depth for r in result.minutes], label="queue depth", lw=1.2)
    load.axhline(
        result.rules.queue_per_replica or 0, color="grey", ls=":", lw=0.8, label="queue target"
    )
    load.set_ylabel("jobs")
    load.legend(fontsize="small", loc="upper left")
    load.grid(True, alpha=0.3)
    replicas.step(hours, [r.replicas for r in result.minutes], where="post", color="tab:green")
    replicas.set_ylabel("worker replicas")
    replicas.set_ylim(0, result.rules.max_replicas + 0.5)
    replicas.grid(True, alpha=0.3)
    cpu.plot(
        hours,
        [r.cpu_percent if r.cpu_percent is not None else float("nan") for r in result.minutes],
        color="tab:red",
        lw=0.8,
    )
    cpu.axhline(result.rules.cpu_percent, color="grey", ls=":", lw=0.8)
    cpu.set_ylabel("busy slots %")
    cpu.set_xlabel("hour of the day")
    cpu.set_ylim(0, 105)
    cpu.grid(True, alpha=0.3)
    waits = result.wait_percentiles()
    figure.suptitle(
        (title + "\n" if title else "")
        + f"{result.jobs_done:,} of {result.jobs_total:,} jobs done; wait p50 {waits[50]:.1f} s,"
        f" p95 {waits[95]:.1f} s, p99 {waits[99]:.1f} s; ${result.cost.total_usd:.2f}"
    )
    figure.tight_layout()
    target = Path(path)
    figure.savefig(target, format="png")
    return target
