"""``stolentee models list | install``: the background-removal model files."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from stolentee.cli.common import console, load_settings

models_app = typer.Typer(help="Background-removal model files.", no_args_is_help=True)


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
