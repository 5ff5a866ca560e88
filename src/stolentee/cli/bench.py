"""``stolentee bench``: quality, speed and memory against rembg (mounted into the main CLI).

stolentee bench quality [--vs rembg] [--data DIR] [--limit N] [--json OUT]
stolentee bench removal [--vs rembg] [--sizes 1,4,12] [--repeat N] [--json OUT]
stolentee bench memory  [--vs rembg] [--images 500] [--json OUT]
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from stolentee.bench.names import (
    CATEGORIES,
    DEFAULT_DATA_DIR,
    DEFAULT_SIZES_MP,
    DEFAULT_TOLERANCE_PX,
    OURS,
)
from stolentee.cli.bench_report import (
    console,
    print_memory,
    print_quality,
    print_speed,
    print_worst,
)
from stolentee.cli.common import err_console
from stolentee.errors import StolenteeError

if TYPE_CHECKING:  # the benchmark modules need numpy and the engine: imported when one runs
    from stolentee.config import EngineSettings

bench_app = typer.Typer(
    help="Benchmarks against rembg: matte quality, speed and memory (see benchmarks/removal.md).",
    no_args_is_help=True,
)


class Peer(StrEnum):
    REMBG = "rembg"
    BARE = "bare"  # the same model run the plain way (resize, min-max, bilinear upscale)


DataOption = Annotated[
    Path,
    typer.Option("--data", help="Evaluation set built by benchmarks/build_eval_set.py."),
]
VsOption = Annotated[
    list[Peer] | None,
    typer.Option(
        "--vs",
        help="Also run this peer with the same model (repeatable): rembg, or bare (the model "
        "run the plain way).",
    ),
]
ModelOption = Annotated[
    str | None,
    typer.Option(
        help="Model (or tier: fast, quality) for every contender (default STOLENTEE_MODEL)."
    ),
]
JsonOption = Annotated[
    Path | None, typer.Option("--json", help="Also write the full results as JSON here.")
]


@contextmanager
def _clean_errors() -> Iterator[None]:
    try:
        yield
    except StolenteeError as exc:
        err_console.print(f"[bold red]error:[/] {escape(exc.detail)}")
        raise typer.Exit(2) from exc
    except ValidationError as exc:
        err_console.print(f"[bold red]invalid configuration:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc


def _contender_names(vs: list[Peer] | None) -> list[str]:
    from stolentee.bench.contenders import import_rembg

    peers = list(dict.fromkeys(vs or ()))
    if Peer.REMBG in peers:
        import_rembg()  # fail early, with the install command, before any work
    return [OURS] + [str(peer) for peer in peers]


def _model_name(settings: EngineSettings, model: str | None) -> str:
    """The model every contender loads: ``--model`` (a tier resolved here) or STOLENTEE_MODEL."""
    from stolentee.removal import inference, models

    bfloat16 = inference.bfloat16_available(settings)
    return models.resolve(settings.models_dir, model or settings.model, bfloat16=bfloat16)


def _write_json(path: Path | None, payload: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    console.print(f"wrote {path}", markup=False)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )


# --- quality -----------------------------------------------------------------------------------


@bench_app.command()
def quality(
    vs: VsOption = None,
    data: DataOption = DEFAULT_DATA_DIR,
    limit: Annotated[
        int | None, typer.Option(min=1, help="At most this many images per category.")
    ] = None,
    category: Annotated[
        list[str] | None, typer.Option(help=f"Only these categories ({', '.join(CATEGORIES)}).")
    ] = None,
    tolerance: Annotated[
        int, typer.Option(min=0, help="Boundary F tolerance in pixels.")
    ] = DEFAULT_TOLERANCE_PX,
    worst: Annotated[
        int, typer.Option(min=0, help="Also list our N lowest-IoU images per category.")
    ] = 0,
    model: ModelOption = None,
    json_out: JsonOption = None,
) -> None:
    """Matte quality per category: IoU, alpha MAE, boundary F, seconds per image."""
    from stolentee.bench.contenders import Contender, make_contender
    from stolentee.bench.quality import load_eval_set, run_quality
    from stolentee.config import EngineSettings

    with _clean_errors():
        settings = EngineSettings()
        model_name = _model_name(settings, model)
        images = load_eval_set(data, categories=category or CATEGORIES, limit=limit)
        names = _contender_names(vs)
        contenders: list[Contender] = [
            make_contender(name, settings=settings, model=model_name) for name in names
        ]
        console.print(
            f"quality: {len(images)} images from {data}, model {model_name}, "
            f"contenders {', '.join(names)}"
        )
        with _progress() as bar:
            task = bar.add_task("scoring", total=len(images))
            report = run_quality(
                contenders,
                images,
                tolerance_px=tolerance,
                progress=lambda done, _total, _id: bar.update(task, completed=done),
            )
        for contender in contenders:
            contender.close()
        print_quality(report)
        if worst:
            print_worst(report, images, worst)
        _write_json(json_out, report.to_dict())


# --- speed -------------------------------------------------------------------------------------


def _parse_sizes(text: str) -> list[float]:
    try:
        sizes = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"--sizes wants numbers like 1,4,12; got {text!r}") from None
    if not sizes or any(size <= 0 or size > 50 for size in sizes):
        raise typer.BadParameter("--sizes: each size must be in (0, 50] megapixels")
    return sizes


@bench_app.command()
def removal(
    vs: VsOption = None,
    sizes: Annotated[
        str, typer.Option(help="Image sizes in megapixels, comma-separated.")
    ] = ",".join(f"{s:g}" for s in DEFAULT_SIZES_MP),
    repeat: Annotated[int, typer.Option(min=1, help="Timed calls per image and contender.")] = 3,
    per_size: Annotated[
        int, typer.Option(min=1, help="Distinct photos and graphics per size.")
    ] = 2,
    rss: Annotated[
        bool, typer.Option(help="Measure peak RSS per contender in child processes.")
    ] = True,
    data: DataOption = DEFAULT_DATA_DIR,
    model: ModelOption = None,
    json_out: JsonOption = None,
) -> None:
    """Speed of the whole pipeline (bytes in, PNG out), interleaved with rembg in one process."""
    from stolentee.bench.speed import run_removal_benchmark
    from stolentee.config import EngineSettings

    with _clean_errors():
        size_list = _parse_sizes(sizes)
        settings = EngineSettings()
        model_name = _model_name(settings, model)
        names = _contender_names(vs)
        with _progress() as bar:
            task = bar.add_task("timing", total=None)
            report, _images = run_removal_benchmark(
                settings=settings,
                data_dir=data,
                contender_names=names,
                model=model_name,
                sizes_mp=size_list,
                repeat=repeat,
                per_size=per_size,
                measure_rss=rss,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
                log=lambda line: err_console.print(line, markup=False),
            )
        print_speed(report)
        _write_json(json_out, report.to_dict())


# --- memory ------------------------------------------------------------------------------------


@bench_app.command()
def memory(
    vs: VsOption = None,
    images: Annotated[
        int, typer.Option(min=1, help="Images to process in sequence (cycling the set).")
    ] = 500,
    data: DataOption = DEFAULT_DATA_DIR,
    model: ModelOption = None,
    json_out: JsonOption = None,
) -> None:
    """RSS over a long sequential run like `stolentee remove`, each contender in its own process."""
    from stolentee.bench.memory import run_memory_benchmark
    from stolentee.config import EngineSettings

    with _clean_errors():
        settings = EngineSettings()
        model_name = _model_name(settings, model)
        names = _contender_names(vs)
        report = run_memory_benchmark(
            settings=settings,
            data_dir=data,
            contender_names=names,
            model=model_name,
            count=images,
            log=lambda line: err_console.print(line, markup=False),
        )
        print_memory(report)
        _write_json(json_out, report.to_dict())
