"""What every command shares: the consoles, and the settings built once at the entry point."""

from __future__ import annotations

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from stolentee.config import Settings
from stolentee.errors import StolenteeError

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


def print_error(exc: StolenteeError) -> None:
    """One line, ``error <code>: <detail>``, on standard error."""
    err_console.print(f"[bold red]error[/] {exc.code}: {escape(exc.detail)}")
