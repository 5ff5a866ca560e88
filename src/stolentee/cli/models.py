"""``stolentee models list | install | quantize``: the background-removal model files."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from stolentee.cli.common import console, load_settings

models_app = typer.Typer(help="Background-removal model files.", no_args_is_help=True)


@models_app.command("list")
def models_list() -> None:
    """Every supported model: family, tier, file, size, input, normalisation, licence, state."""
    from stolentee.removal import inference, models
    from stolentee.removal.model_record import read_record

    settings = load_settings().engine
    no_bfloat16 = inference.why_not_bfloat16(settings)
    bfloat16 = no_bfloat16 is None
    table = Table(title=f"models in {settings.models_dir}")
    for column in ("Model", "Family", "Tier", "State", "File", "MB", "Input", "Normalisation"):
        table.add_column(column)
    quality = None
    with contextlib.suppress(models.ModelNotInstalledError):  # no quality model installed
        quality = models.resolve(settings.models_dir, models.Tier.QUALITY, bfloat16=bfloat16)
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
        f"Tiers: fast = the first installed of {', '.join(models.FAST_ORDER)}; quality = the "
        f"first installed of {', '.join(models.QUALITY_ORDER)}."
    )
    bfloat16_models = ", ".join(spec.name for spec in models.MODELS.values() if spec.bfloat16)
    if bfloat16:
        console.print(
            f"bfloat16: {bfloat16_models} computed in bfloat16 on OpenVINO (this CPU has it); "
            "the quality tier takes the float file before its int8 build."
        )
    else:
        console.print(f"bfloat16: off ({no_bfloat16}); {bfloat16_models} in float32.")
    for spec in models.MODELS.values():
        if spec.derived_from is None:
            continue
        record = read_record(models.model_path(settings.models_dir, spec))
        if record is None:
            console.print(f"{spec.name}: built here by `{models.install_hint(spec)}`")
            continue
        verdict = "passed" if record.passed else "FAILED"
        console.print(
            f"{spec.name}: built {record.created} from {record.source} ({verdict} the "
            f"agreement floor {record.floor}{_lowest(record.lowest_floor)}: mean IoU "
            f"{record.agreement_mean:.4f}, lowest "
            f"{record.agreement_min:.4f}); inference {record.int8_seconds:.3f} s vs "
            f"{record.float_seconds:.3f} s float"
        )


def _lowest(floor: float | None) -> str:
    return "" if floor is None else f", lowest photo {floor}"


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


@models_app.command("quantize")
def models_quantize(
    name: Annotated[str, typer.Argument(help="The float model to quantise (isnet, u2netp).")],
    images: Annotated[
        Path,
        typer.Option(
            help="Folder of photos like your customers' uploads, split into calibration and "
            "evaluation (default: the development set's photos from `make bench-data`)."
        ),
    ] = Path("benchmarks/data/photo"),
    floor: Annotated[
        float,
        typer.Option(
            min=0.5,
            max=1.0,
            help="Agreement floor: the mean and the lowest IoU with the float model's masks.",
        ),
    ] = 0.99,
    lowest: Annotated[
        float | None,
        typer.Option(
            min=0.5,
            max=1.0,
            help="A floor of its own for the lowest photo's IoU (default: --floor). Soft "
            "mattes, such as u2netp's, flip pixels near 0.5 on a few photos.",
        ),
    ] = None,
) -> None:
    """Build the int8 model of NAME on this machine, installed only if it agrees with the float
    model (IoU of the masks >= --floor, mean and lowest, on the evaluation photos; the lowest
    at --lowest where given).

    Static QDQ quantisation (onnxruntime): per-channel int8 weights, uint8 activations from
    Entropy calibration, the model's sensitive nodes kept in float. It then serves its tier
    in place of the float file. About 7 minutes and 6.5 GB of memory for IS-Net on 2 cores, under
    a minute for u2netp; the result is a file that can be copied to other machines with its .json
    record.
    """
    from stolentee.removal import models
    from stolentee.removal.precision import int8

    settings = load_settings().engine
    spec = models.get_spec(name)
    if spec.int8 is None:
        buildable = ", ".join(s.name for s in models.MODELS.values() if s.int8)
        raise typer.BadParameter(f"{name} has no int8 build; models that do: {buildable}")
    models.locate(settings.models_dir, name)  # installed and intact, or a clear error
    photos = int8.find_photos(images)
    record = int8.build(
        spec,
        models.get_spec(spec.int8),
        settings.models_dir,
        photos,
        floor=floor,
        lowest_floor=lowest,
        threads=settings.threads,
        report=console.print,
    )
    console.print(
        f"{record.model}: {record.float_seconds / record.int8_seconds:.2f}x the float model's "
        f"inference; {_serves(record.model)}"
    )


def _serves(name: str) -> str:
    from stolentee.removal import models

    if models.tier_of(name) is models.Tier.FAST:
        return (
            "it now serves the fast tier (STOLENTEE_MODEL=fast, or =u2netp-int8; the default "
            "STOLENTEE_MODEL=u2netp keeps the float file)"
        )
    return "it now serves the quality tier (pin STOLENTEE_PREMIUM_MODEL to choose)"
