"""``stolentee autoscale``: run the controller, write Kubernetes manifests, simulate a trace.

``autoscale run`` reads the services' ``/metrics``, applies the policy every
``STOLENTEE_SCALE_INTERVAL_S`` and acts through the backend (``log``: dry run, the default;
``railway``: Railway's GraphQL API). ``autoscale manifests`` writes the same policy as a
Kubernetes HPA (API) and KEDA ScaledObject (worker). ``autoscale simulate`` replays a load trace
(the shipped day at 1,000 users by default) through the policy and a queue model, with the
compute cost from the price book.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from stolentee.cli.common import console, err_console, load_settings
from stolentee.config import ScalingSettings
from stolentee.costs.pricebook_files import load_pricebook
from stolentee.errors import StolenteeError
from stolentee.scaling.controller import Controller, LogBackend, Outcome, ScaleBackend
from stolentee.scaling.manifests import Targets, manifests, write_manifests
from stolentee.scaling.policy import WORKER, Policy, duration
from stolentee.scaling.railway import RailwayBackend, RailwayClient
from stolentee.scaling.simulate import (
    SimulationConfig,
    SimulationResult,
    hourly,
    plot_simulation,
    simulate,
)
from stolentee.scaling.sources import GB, MetricsSource, ReplicaSize
from stolentee.scaling.trace import read_trace

autoscale_app = typer.Typer(
    help="Autoscaling: the controller (seed triggers), Kubernetes manifests, load simulation.",
    no_args_is_help=True,
)


class BackendName(StrEnum):
    LOG = "log"
    RAILWAY = "railway"


def _settings() -> tuple[ScalingSettings, int]:
    """The scaling settings and the worker concurrency (a clean exit on invalid values)."""
    settings = load_settings()
    return settings.scaling, settings.queue.worker_concurrency


def _fail(exc: StolenteeError, code: int = 1) -> typer.Exit:
    err_console.print(f"[bold red]error[/] {exc.code}: {escape(exc.detail)}")
    return typer.Exit(code)


def build_backend(settings: ScalingSettings, name: str) -> ScaleBackend:
    if name == BackendName.RAILWAY:
        api_token = settings.railway_api_token.get_secret_value()
        project_token = settings.railway_project_token.get_secret_value()
        client = RailwayClient(
            url=settings.railway_api_url,
            token=api_token or project_token,
            project_scoped=not api_token,
            timeout_s=settings.railway_timeout_s,
        )
        return RailwayBackend(
            client=client,
            environment_id=settings.railway_environment_id,
            service_ids={s: settings.railway_service_id(s) for s in settings.scaled_services},
            redeploy=settings.railway_redeploy,
        )
    return LogBackend()


def build_source(settings: ScalingSettings) -> MetricsSource:
    sizes = {}
    for service in settings.scaled_services:
        vcpus, memory_gb = settings.replica_size(service)
        sizes[service] = ReplicaSize(vcpus=vcpus, memory_bytes=memory_gb * GB)
    return MetricsSource(
        urls={service: settings.metrics_urls(service) for service in settings.scaled_services},
        sizes=sizes,
        queue_urls=settings.metrics_urls("api"),  # the queue figures, even if the API is not scaled
        token=settings.metrics_token.get_secret_value(),
        timeout_s=settings.metrics_timeout_s,
    )


def _print_outcomes(outcomes: list[Outcome]) -> None:
    stamp = datetime.now().strftime("%H:%M:%S")
    for outcome in outcomes:
        decision = outcome.decision
        if not decision.changed:
            verdict = f"{decision.current} replicas, hold"
        elif outcome.applied:
            verdict = f"[bold]{decision.current} -> {decision.desired}[/] replicas"
        else:
            verdict = f"[bold red]{decision.current} -> {decision.desired} refused[/]"
        line = f"{stamp} {decision.service}: {verdict}: {escape(decision.reason)}"
        if outcome.error:
            line += f" [red]({escape(outcome.error)})[/]"
        console.print(line, highlight=False)


@autoscale_app.command("run")
def run(
    backend: Annotated[
        BackendName | None,
        typer.Option(
            "--backend",
            case_sensitive=False,
            help="log (dry run) or railway (default STOLENTEE_SCALE_BACKEND).",
            show_default=False,
        ),
    ] = None,
    once: Annotated[
        bool,
        typer.Option(
            "--once",
            help="Evaluate once and exit (1 if a change was refused). One read has no CPU rate: "
            "only the queue and memory figures count.",
        ),
    ] = False,
    interval_s: Annotated[
        float | None,
        typer.Option(
            "--interval",
            min=1,
            help="Seconds between evaluations (default STOLENTEE_SCALE_INTERVAL_S).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Scale the services on their /metrics with the seed's triggers, through a backend."""
    settings, concurrency = _settings()
    policy = Policy.from_settings(settings, worker_concurrency=concurrency)
    chosen = (backend or BackendName(settings.backend)).value
    try:
        scaler = build_backend(settings, chosen)
    except StolenteeError as exc:
        raise _fail(exc, 2) from exc
    source = build_source(settings)
    controller = Controller(policy=policy, source=source, backend=scaler)
    try:
        state = controller.start()
        every = interval_s or settings.interval_s
        start = ", ".join(f"{name} {s.replicas}" for name, s in state.services.items())
        console.print(
            f"autoscale: backend {chosen}, every {duration(every)}; replicas now: {start}",
            highlight=False,
        )
        if once:
            outcomes = controller.tick()
            _print_outcomes(outcomes)
            if any(o.decision.changed and not o.applied for o in outcomes):
                raise typer.Exit(1)
            return
        try:
            controller.run(interval_s=every, on_tick=_print_outcomes)
        except KeyboardInterrupt:
            console.print("autoscale: stopped")
    finally:
        source.close()
        scaler.close()


@autoscale_app.command("manifests")
def manifests_command(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            file_okay=False,
            help="Directory to write hpa-api.yaml and keda-worker.yaml to (default: print).",
            show_default=False,
        ),
    ] = None,
    namespace: Annotated[str, typer.Option(help="Kubernetes namespace.")] = "default",
    api_deployment: Annotated[
        str, typer.Option(help="Deployment running `stolentee serve`.")
    ] = "stolentee-api",
    worker_deployment: Annotated[
        str, typer.Option(help="Deployment running `stolentee worker`.")
    ] = "stolentee-worker",
    redis_address: Annotated[
        str,
        typer.Option(help="Redis host:port for KEDA (default: read from --redis-address-env)."),
    ] = "",
    redis_address_env: Annotated[
        str, typer.Option(help="Worker container variable holding Redis host:port.")
    ] = "REDIS_ADDRESS",
    redis_password_env: Annotated[
        str, typer.Option(help="Worker container variable holding the Redis password, if any.")
    ] = "",
    redis_database: Annotated[int, typer.Option(min=0, help="Redis database index.")] = 0,
) -> None:
    """Write the policy as a Kubernetes HPA (API) and a KEDA ScaledObject (worker)."""
    settings, concurrency = _settings()
    policy = Policy.from_settings(settings, worker_concurrency=concurrency)
    targets = Targets(
        namespace=namespace,
        api_deployment=api_deployment,
        worker_deployment=worker_deployment,
        redis_address=redis_address,
        redis_address_env=redis_address_env,
        redis_password_env=redis_password_env,
        redis_database=redis_database,
        polling_interval_s=max(1, round(settings.interval_s)),
    )
    found = manifests(policy.services, targets)
    if out is None:
        typer.echo("---\n".join(manifest.text() for manifest in found), nl=False)
        return
    for path in write_manifests(found, out):
        err_console.print(f"wrote {escape(str(path))}", highlight=False)


@autoscale_app.command("simulate")
def simulate_command(
    trace: Annotated[
        Path | None,
        typer.Argument(
            metavar="[TRACE.csv]",
            help="CSV trace: minute, arrivals, job_cost_s[, active_users] (default: the shipped "
            "day at 1,000 users).",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Also draw the run to this PNG file.", dir_okay=False),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="Jobs per worker replica (default STOLENTEE_WORKER_CONCURRENCY).",
            show_default=False,
        ),
    ] = None,
    startup_s: Annotated[
        float, typer.Option("--startup-s", min=0, help="Seconds before a new replica works.")
    ] = 60.0,
    pricebook: Annotated[
        Path | None,
        typer.Option(
            "--pricebook",
            help="A TOML file whose entries override the shipped price book (same layout).",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Replay a load trace through the policy and a worker queue model; waits and cost."""
    settings, default_concurrency = _settings()
    slots = concurrency or default_concurrency
    policy = Policy.from_settings(settings, worker_concurrency=slots)
    rules = policy.services.get(WORKER) or Policy.from_settings(
        settings.model_copy(update={"services": WORKER}), worker_concurrency=slots
    ).rules(WORKER)
    try:
        rows = read_trace(trace)
        book = load_pricebook(pricebook)
    except StolenteeError as exc:
        raise _fail(exc) from exc
    config = SimulationConfig(
        concurrency=slots,
        startup_s=startup_s,
        vcpus=settings.worker_vcpus,
        memory_gb=settings.worker_memory_gb,
    )
    started = time.perf_counter()
    result = simulate(rows, rules, config, book)
    label = str(trace) if trace is not None else "the shipped day at 1,000 users"
    if as_json:
        typer.echo(json.dumps({"trace": label, **result.as_dict()}, indent=2))
    else:
        _render(result, label, time.perf_counter() - started)
    if plot is not None:
        try:
            written = plot_simulation(result, plot, title=f"stolentee autoscale simulate: {label}")
        except StolenteeError as exc:
            raise _fail(exc) from exc
        err_console.print(f"wrote {escape(str(written))}", highlight=False)


def _clock(at_s: float) -> str:
    minutes = round(at_s / 60)
    day, rest = divmod(minutes, 1440)
    text = f"{rest // 60:02d}:{rest % 60:02d}"
    return text if not day else f"{text} (+{day}d)"


def _render(result: SimulationResult, label: str, elapsed_s: float) -> None:
    rules = result.rules
    config = result.config
    console.print(
        f"[bold]Simulated {escape(label)}[/]: {result.trace_minutes:,} minutes"
        + (f" (+{result.drain_minutes} to drain)" if result.drain_minutes else "")
        + f", worker replicas of {config.vcpus:g} vCPU / {config.memory_gb:g} GB, "
        f"{config.concurrency} jobs each, {config.startup_s:g} s to start.",
        highlight=False,
    )
    console.print(
        f"Policy: queue > {rules.queue_per_replica} per worker -> more workers; CPU > "
        f"{rules.cpu_percent:.0f}% for {duration(rules.cpu_window_s)} -> +{rules.step_up}; "
        f"scale down after {duration(rules.scale_down_stabilisation_s)} calm; "
        f"{rules.min_replicas}-{rules.max_replicas} replicas.",
        highlight=False,
    )
    table = Table(box=box.SIMPLE_HEAD, title="Worker replicas by hour")
    for column in ("hour", "arrivals", "replicas", "peak queue", "wait p95"):
        table.add_column(column, justify="right")
    for hour in hourly(result):
        replicas = (
            str(hour.max_replicas)
            if hour.min_replicas == hour.max_replicas
            else f"{hour.min_replicas}-{hour.max_replicas}"
        )
        table.add_row(
            f"{hour.hour % 24:02d}:00" + ("+1d" if hour.hour >= 24 else ""),
            f"{hour.arrivals:,}",
            replicas,
            f"{hour.peak_queue:,}",
            f"{hour.wait_p95_s:.1f} s",
        )
    console.print(table)
    console.print("[bold]Replica changes[/]")
    if not result.changes:
        console.print(f"  none: {result.minutes[0].replicas} replica(s) all along", highlight=False)
    for change in result.changes:
        console.print(
            f"  {_clock(change.at_s)}  {change.current} -> {change.desired}: "
            f"{escape(change.reason)}",
            highlight=False,
        )
    waits = result.wait_percentiles()
    times = result.job_time_percentiles()
    console.print(
        f"Jobs: {result.jobs_total:,} arrived, {result.jobs_done:,} done.", highlight=False
    )
    console.print(
        f"Queue wait: p50 {waits[50]:.1f} s, p95 {waits[95]:.1f} s, p99 {waits[99]:.1f} s, "
        f"max {max(result.waits_s, default=0.0):.1f} s; job time (wait + processing) p95 "
        f"{times[95]:.1f} s (seed goal: < 5 min).",
        highlight=False,
    )
    cost = result.cost
    static = result.static_cost
    ram = cost.ram_price
    vcpu = cost.vcpu_price
    console.print(
        f"Compute (Railway, price book {ram.as_of.isoformat()}: ${ram.value}/GB-month RAM, "
        f"${vcpu.value}/vCPU-month): {cost.replica_minutes:,} replica-minutes = "
        f"${cost.ram_usd:.2f} RAM + ${cost.vcpu_usd:.2f} vCPU = [bold]${cost.total_usd:.2f}[/] "
        f"(${cost.total_usd * 30:.2f} for 30 such days); at the peak of "
        f"{result.peak_replicas} replicas all along: ${static.total_usd:.2f} "
        f"(${static.total_usd * 30:.2f}). Railway bills measured use: an upper bound.",
        highlight=False,
    )
    console.print(f"[dim]simulated in {elapsed_s:.2f} s[/]", highlight=False)
