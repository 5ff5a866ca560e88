"""``stolentee remove``: background removal of local files in batch, with a progress bar."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from stolentee.cli.common import console, err_console, load_settings
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


def remove(
    inputs: Annotated[list[Path], typer.Argument(help="Image files or folders (recursive).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder.")],
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, max=64, help="Parallel images.")] = 2,
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs.")] = False,
    model: Annotated[
        str | None, typer.Option(help="Model for photos: a name, or a tier (fast, quality).")
    ] = None,
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
