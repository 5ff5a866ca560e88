"""``stolentee config show | docs``: the effective settings, and every setting documented."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.table import Table

from stolentee.cli.common import console, load_settings
from stolentee.config import configuration_markdown, effective_settings

config_app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)


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
    """Print the configuration reference (``stolentee config docs > docs/configuration.md``)."""
    sys.stdout.write(configuration_markdown())
