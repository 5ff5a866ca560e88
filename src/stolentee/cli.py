"""The ``stolentee`` command: one CLI for every role (API server, operator tools).

Settings are built once here, at the entry point, and passed to what each command runs.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from stolentee import __version__
from stolentee.config import Settings, effective_settings, iter_setting_docs
from stolentee.errors import StolenteeError
from stolentee.removal.base import (
    ImageKind,
    RemovalOptions,
    parse_channels,
    parse_color,
    parse_crop_margin,
    parse_format,
    parse_kind,
    parse_size,
)

if TYPE_CHECKING:
    from typer._click import Command, Context  # typer carries its own click

    from stolentee.db.engine import Database

# Command groups imported only when invoked (or listed by --help): ``stolentee migrate-storage``
# should not pay for SQLAlchemy, the cost model and the autoscaler before it copies anything.
# name -> (module, attribute): a ``typer.Typer`` app, or a function for a single command.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "keys": ("stolentee.keys.cli", "keys_app"),
    "bench": ("stolentee.bench.cli", "bench_app"),
    "stats": ("stolentee.removal.stats_cli", "stats_app"),
    "costs": ("stolentee.costs.cli", "costs_app"),
    "autoscale": ("stolentee.scaling.cli", "autoscale_app"),
    "migrate-storage": ("stolentee.storage.cli", "migrate_storage"),
}


class _LazyGroup(TyperGroup):
    """The top-level group: commands of :data:`LAZY_COMMANDS` are imported on first use."""

    def list_commands(self, ctx: Context) -> list[str]:
        names = super().list_commands(ctx)
        return names + [name for name in LAZY_COMMANDS if name not in names]

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in LAZY_COMMANDS:
            return command
        module_name, attribute = LAZY_COMMANDS[cmd_name]
        target = getattr(importlib.import_module(module_name), attribute)
        # Mounted on a throw-away parent, so that it is built as a subcommand (no completion
        # options of its own), exactly as ``add_typer`` / ``command`` would have built it.
        parent = typer.Typer(add_completion=False)
        parent.callback()(_no_op)
        if isinstance(target, typer.Typer):
            parent.add_typer(target, name=cmd_name)
        else:
            parent.command(cmd_name)(target)
        built = typer.main.get_command(parent)
        assert isinstance(built, TyperGroup)
        command = built.commands[cmd_name]
        self.add_command(command, cmd_name)
        return command


def _no_op() -> None:
    """Callback of the throw-away parent in :meth:`_LazyGroup.get_command`."""


app = typer.Typer(
    name="stolentee",
    help="Self-hostable print-on-demand backend: API server and operator tools.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=_LazyGroup,
)
config_app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)
models_app = typer.Typer(help="Background-removal model files.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")
app.add_typer(models_app, name="models")

console = Console()
err_console = Console(stderr=True)


def load_settings() -> Settings:
    """Build the settings from the environment, turning validation errors into a clean exit."""
    try:
        return Settings()
    except ValidationError as exc:
        err_console.print("[bold red]Invalid configuration:[/]")
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            err_console.print(f"  {where}: {error['msg']}")
        raise typer.Exit(2) from exc


@app.command()
def version() -> None:
    """Print stolentee's version."""
    console.print(__version__)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default STOLENTEE_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default PORT).")] = None,
    workers: Annotated[
        int | None, typer.Option(help="HTTP worker processes (default STOLENTEE_HTTP_WORKERS).")
    ] = None,
    worker: Annotated[
        bool | None,
        typer.Option(
            "--worker/--no-worker",
            help="Also process design jobs in this process (default STOLENTEE_RUN_WORKER).",
        ),
    ] = None,
    worker_concurrency: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="Jobs at once (default STOLENTEE_WORKER_CONCURRENCY)."),
    ] = None,
) -> None:
    """Run the HTTP API server (uvicorn), with an in-process job worker by default."""
    import uvicorn

    from stolentee.api.app import create_app
    from stolentee.callbacks import CallbackSender
    from stolentee.logs import configure_logging

    settings = load_settings()
    configure_logging(settings.service)
    CallbackSender.from_settings(settings.api)  # wrong callback settings: a clear error, now
    bind_host = host or settings.service.host
    bind_port = port or settings.service.port
    worker_count = workers or settings.service.http_workers
    common: dict[str, Any] = {
        "host": bind_host,
        "port": bind_port,
        "log_config": None,
        "proxy_headers": True,
        "timeout_graceful_shutdown": 30,
        "timeout_keep_alive": settings.service.keepalive_s,
    }
    if worker_count > 1:
        if worker is not None or worker_concurrency is not None:
            raise typer.BadParameter(
                "with several HTTP workers, set STOLENTEE_RUN_WORKER and "
                "STOLENTEE_WORKER_CONCURRENCY in the environment instead"
            )
        # Each worker process builds its own settings and pool from the same environment; their
        # metrics meet in a fresh multiprocess directory (stale files would be summed in).
        metrics_root = settings.service.data_dir / "metrics"
        metrics_root.mkdir(parents=True, exist_ok=True)
        metrics_dir = tempfile.mkdtemp(prefix="http-workers-", dir=metrics_root)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # read by the workers' settings
        try:
            uvicorn.run(
                "stolentee.api.app:app_from_env", factory=True, workers=worker_count, **common
            )
        finally:
            shutil.rmtree(metrics_dir, ignore_errors=True)
        return
    if worker_concurrency is not None:
        settings.queue = settings.queue.model_copy(
            update={"worker_concurrency": worker_concurrency}
        )
    uvicorn.run(create_app(settings, run_worker=worker), **common)


@app.command("removal-service")
def removal_service(
    host: Annotated[str | None, typer.Option(help="Bind address (default STOLENTEE_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default PORT).")] = None,
) -> None:
    """Run only the removal API (/v1.0/removebg, /api/remove, health) as its own service.

    The seed's "Railway Worker - rembg": deploy it separately (2 GB of memory is plenty for the
    default u2netp model) and point the main service's REMBG_ENDPOINT at it. The engine is loaded
    once; concurrency is STOLENTEE_ENGINE_MAX_IN_FLIGHT.
    """
    import uvicorn

    from stolentee.api.app import create_app
    from stolentee.logs import configure_logging

    settings = load_settings()
    configure_logging(settings.service)
    uvicorn.run(
        create_app(settings, role="removal"),
        host=host or settings.service.host,
        port=port or settings.service.port,
        log_config=None,
        proxy_headers=True,
        timeout_graceful_shutdown=30,
        timeout_keep_alive=settings.service.keepalive_s,
    )


@app.command("worker")
def worker_command(
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="Jobs at once (default STOLENTEE_WORKER_CONCURRENCY)."),
    ] = None,
    graceful_timeout_s: Annotated[
        float, typer.Option(help="On SIGTERM, time to finish running jobs before handing back.")
    ] = 30.0,
) -> None:
    """Process design jobs from the queue until SIGTERM (scale out: one or many processes)."""
    from prometheus_client import start_http_server

    from stolentee.logs import configure_logging
    from stolentee.runtime import build_runtime

    settings = load_settings()
    configure_logging(settings.service)
    with build_runtime(settings, "worker", worker_concurrency=concurrency) as runtime:
        job_worker = runtime.worker
        assert job_worker is not None  # the worker role always builds one
        if settings.service.metrics_port:
            start_http_server(
                settings.service.metrics_port,
                addr=settings.service.host,
                registry=runtime.metrics.registry,
            )
        err_console.print(
            f"worker {job_worker.owner}: {job_worker.concurrency} at once, "
            f"queue {runtime.queue.transport.backend}, "
            f"database {runtime.database.url.get_backend_name()}, "
            f"removal {' -> '.join(runtime.providers.order())}"
        )
        runtime.start()
        job_worker.run_forever(graceful_timeout_s=graceful_timeout_s)


@config_app.command("show")
def config_show(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Print the effective settings, secrets masked."""
    settings = load_settings()
    rows = effective_settings(settings)
    if as_json:
        print(json.dumps({doc.env_var: value for doc, value in rows}, indent=2))
        return
    table = Table(title="stolentee settings (effective)")
    table.add_column("Variable", style="bold")
    table.add_column("Value")
    table.add_column("Section")
    for doc, value in rows:
        table.add_row(doc.env_var, value, doc.section)
    console.print(table)


@config_app.command("docs")
def config_docs() -> None:
    """Print every setting as a Markdown table (the README's configuration table)."""
    print("| Variable | Default | Description |")
    print("|---|---|---|")
    for doc in iter_setting_docs():
        default = f"`{doc.default}`" if doc.default else "(empty)"
        print(f"| `{doc.env_var}` | {default} | {doc.description} |")


def _database() -> Database:
    from stolentee.db.engine import Database

    return Database(settings=load_settings().database, watchdog=False)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply pending migrations (up to REVISION, default head)."""
    from stolentee.db import migrate

    database = _database()
    try:
        before = migrate.current_revision(database)
        after = migrate.upgrade(database, revision)
    finally:
        database.dispose()
    if before == after:
        console.print(f"Database already at revision {after}.")
    else:
        console.print(f"Database upgraded from {before or 'empty'} to {after}.")


@db_app.command("current")
def db_current() -> None:
    """Print the database's revision and the newest one this version ships."""
    from stolentee.db import migrate

    database = _database()
    try:
        current = migrate.current_revision(database)
    finally:
        database.dispose()
    head = migrate.head_revision()
    state = "up to date" if current == head else "migrations pending: run `stolentee db upgrade`"
    console.print(f"current: {current or 'empty'}  head: {head}  ({state})")


def main() -> None:
    try:
        app()
    except StolenteeError as exc:
        err_console.print(f"[bold red]error[/] {exc.code}: {exc.detail}")
        sys.exit(1)


@models_app.command("list")
def models_list() -> None:
    """List the supported models and whether their files are installed and intact."""
    from stolentee.removal import models

    settings = load_settings().engine
    table = Table(title=f"models in {settings.models_dir}")
    for column in ("Model", "State", "Size (MB)", "Input", "Description"):
        table.add_column(column)
    for spec in models.MODELS.values():
        state = models.model_state(settings.models_dir, spec)
        style = {"installed": "green", "missing": "dim", "corrupt": "red"}[state.value]
        name = f"{spec.name} (default)" if spec.name == settings.model else spec.name
        table.add_row(
            name,
            f"[{style}]{state.value}[/]",
            f"{spec.size_mb:g}",
            f"{spec.input_size}px",
            spec.description,
        )
    console.print(table)


@models_app.command("install")
def models_install(
    name: Annotated[
        str | None, typer.Argument(help="Model name (default STOLENTEE_MODEL).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Fetch again even if the file is intact.")] = False,
) -> None:
    """Install a model file into STOLENTEE_MODELS_DIR, md5-verified."""
    from stolentee.removal import models

    settings = load_settings().engine
    models.install(
        settings.models_dir,
        name or settings.model,
        models_url=settings.models_url,
        force=force,
        report=console.print,
    )


@app.command()
def remove(
    inputs: Annotated[list[Path], typer.Argument(help="Image files or folders (recursive).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder.")],
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, max=64, help="Parallel images.")] = 2,
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs.")] = False,
    model: Annotated[str | None, typer.Option(help="Model for photos.")] = None,
    kind: Annotated[
        str, typer.Option("--type", help="auto, graphic, photo (person, product, animal, car).")
    ] = "auto",
    fmt: Annotated[str, typer.Option("--format", help="png, webp or jpg.")] = "png",
    size: Annotated[str, typer.Option(help="preview (0.25 MP), full (25 MP) or auto.")] = "full",
    crop: Annotated[bool, typer.Option(help="Trim to the subject.")] = False,
    crop_margin: Annotated[str, typer.Option(help="Margin when cropping: 20px or 5%.")] = "0",
    channels: Annotated[str, typer.Option(help="rgba, or alpha for the matte only.")] = "rgba",
    bg_color: Annotated[
        str | None, typer.Option(help="Fill the background: hex (81d4fa) or a colour name.")
    ] = None,
) -> None:
    """Remove backgrounds from images in batch; exits 1 if any input failed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from stolentee.removal import batch
    from stolentee.removal.engine import RemovalEngine

    settings = load_settings().engine
    margin_px, margin_percent = parse_crop_margin(crop_margin)
    options = RemovalOptions(
        kind=parse_kind(kind),
        size=parse_size(size),
        format=parse_format(fmt),
        alpha_only=parse_channels(channels),
        bg_color=parse_color(bg_color) if bg_color else None,
        crop=crop,
        crop_margin_px=margin_px,
        crop_margin_percent=margin_percent,
        model=model,
    )
    plan = batch.plan_batch(inputs, output, options.format)
    engine = RemovalEngine(settings=settings.model_copy(update={"max_in_flight": jobs}))
    if options.kind is not ImageKind.GRAPHIC and plan.items:
        engine.session(model)  # fail fast, before any work, when the model is missing
    started = time.perf_counter()
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        task = progress.add_task("removing backgrounds", total=len(plan.items))
        outcomes = batch.run_batch(
            engine,
            plan.items,
            options,
            jobs=jobs,
            overwrite=overwrite,
            on_outcome=lambda _outcome: progress.advance(task),
        )
    elapsed = time.perf_counter() - started
    done = sum(o.status == "done" for o in outcomes)
    skipped = sum(o.status == "skipped" for o in outcomes)
    failures = [(o.item.source, o.error or "failed") for o in outcomes if o.status == "failed"]
    failures += plan.problems
    for source, reason in failures:
        err_console.print(f"[red]failed[/] {source}: {reason}")
    rate = f", {done / elapsed:.2f} images/s" if done and elapsed > 0 else ""
    console.print(
        f"{done} done, {skipped} skipped (already present), {len(failures)} failed "
        f"in {elapsed:.1f} s{rate}"
    )
    if failures:
        raise typer.Exit(1)
