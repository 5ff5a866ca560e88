"""The ``stolentee`` command: one CLI for every role (API server, operator tools).

Settings are built once here, at the entry point, and passed to what each command runs.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from stolentee import __version__
from stolentee.config import Settings, effective_settings, iter_setting_docs
from stolentee.db import migrate
from stolentee.db.engine import Database
from stolentee.errors import StolenteeError

app = typer.Typer(
    name="stolentee",
    help="Self-hostable print-on-demand backend: API server and operator tools.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")

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
        int | None, typer.Option(help="Worker processes (default STOLENTEE_HTTP_WORKERS).")
    ] = None,
) -> None:
    """Run the HTTP API server (uvicorn)."""
    import uvicorn

    from stolentee.api.app import create_app
    from stolentee.logs import configure_logging

    settings = load_settings()
    configure_logging(settings.service)
    bind_host = host or settings.service.host
    bind_port = port or settings.service.port
    worker_count = workers or settings.service.http_workers
    common: dict[str, Any] = {
        "host": bind_host,
        "port": bind_port,
        "log_config": None,
        "proxy_headers": True,
        "timeout_graceful_shutdown": 30,
    }
    if worker_count > 1:
        # Each worker process builds its own settings and pool from the same environment.
        uvicorn.run("stolentee.api.app:app_from_env", factory=True, workers=worker_count, **common)
    else:
        uvicorn.run(create_app(settings), **common)


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
    return Database(settings=load_settings().database, watchdog=False)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply pending migrations (up to REVISION, default head)."""
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
