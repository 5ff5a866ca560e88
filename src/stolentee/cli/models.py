"""``stolentee models list | install``: the background-removal model files."""

from __future__ import annotations

import contextlib
from typing import Annotated

import typer
from rich.table import Table

from stolentee.cli.common import console, load_settings

models_app = typer.Typer(help="Background-removal model files.", no_args_is_help=True)


@models_app.command("list")
def models_list() -> None:
    """Every supported model: family, tier, file, size, input, normalisation, licence, state."""
    from stolentee.removal import models

    settings = load_settings().engine
    table = Table(title=f"models in {settings.models_dir}")
    for column in ("Model", "Family", "Tier", "State", "File", "MB", "Input", "Normalisation"):
        table.add_column(column)
    quality = None
    with contextlib.suppress(models.ModelNotInstalledError):  # no quality model installed
        quality = models.resolve(settings.models_dir, models.Tier.QUALITY)
    for spec in models.MODELS.values():
        state = models.model_state(settings.models_dir, spec)
        style = {"installed": "green", "missing": "dim", "corrupt": "red"}[state.value]
        name = f"{spec.name} (default)" if spec.name == settings.model else spec.name
        tier = models.tier_of(spec.name)
        tier_text = "" if tier is None else tier.value
        if tier is models.Tier.QUALITY and spec.name == quality:
            tier_text = "quality (serves it)"
        table.add_row(
            name,
            spec.family.value,
            tier_text,
            f"[{style}]{state.value}[/]",
            spec.filename,
            f"{spec.size_mb:g}",
            f"{spec.input_size}px",
            spec.normalisation,
        )
    console.print(table)
    console.print("Licences (none of these files is bundled with stolentee):")
    for spec in models.MODELS.values():
        console.print(f"  {spec.name}: {spec.licence}")
    console.print(
        f"Tiers: fast = u2netp; quality = the first installed of {', '.join(models.QUALITY_ORDER)}."
    )


@models_app.command("install")
def models_install(
    name: Annotated[
        str | None, typer.Argument(help="Model name (default STOLENTEE_MODEL).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Fetch again even if the file is intact.")] = False,
) -> None:
    """Install a model file into STOLENTEE_MODELS_DIR, verified (md5; npm chunks by sha256).

    ``isnet`` comes from the npm package @imgly/background-removal-data@1.4.5 (``npm pack``, or
    a download from STOLENTEE_NPM_REGISTRY_URL without npm): read its licence line first.
    """
    from stolentee.removal import models

    settings = load_settings().engine
    models.install(
        settings.models_dir,
        name or settings.model,
        models_url=settings.models_url,
        npm_registry_url=settings.npm_registry_url,
        force=force,
        report=console.print,
    )
