"""``stolentee bench``: quality, speed and memory against rembg (mounted into the main CLI).

stolentee bench quality [--vs rembg] [--data DIR] [--limit N] [--json OUT]
stolentee bench removal [--vs rembg] [--sizes 1,4,12] [--repeat N] [--json OUT]
stolentee bench memory  [--vs rembg] [--images 500] [--json OUT]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stolentee.bench.names import (
    CATEGORIES,
    DEFAULT_DATA_DIR,
    DEFAULT_SIZES_MP,
    DEFAULT_TOLERANCE_PX,
    OURS,
    REMBG,
)
from stolentee.cli.common import err_console
from stolentee.errors import StolenteeError

if TYPE_CHECKING:  # the benchmark modules need numpy and the engine: imported when one runs
    from stolentee.bench.memory import MemoryReport
    from stolentee.bench.quality import EvalImage, QualityReport
    from stolentee.bench.speed import SpeedReport

bench_app = typer.Typer(
    help="Benchmarks against rembg: matte quality, speed and memory (see benchmarks/removal.md).",
    no_args_is_help=True,
)
# Wide tables: when the output is not a terminal (a log file, CI), don't squeeze to 80 columns.
console = Console(width=None if sys.stdout.isatty() else 180)


class Peer(StrEnum):
    REMBG = "rembg"


DataOption = Annotated[
    Path,
    typer.Option("--data", help="Evaluation set built by benchmarks/build_eval_set.py."),
]
VsOption = Annotated[
    Peer | None, typer.Option("--vs", help="Also run this peer with the same model.")
]
ModelOption = Annotated[
    str | None, typer.Option(help="Model for both contenders (default STOLENTEE_MODEL).")
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


def _contender_names(vs: Peer | None) -> list[str]:
    from stolentee.bench.contenders import import_rembg

    if vs is not None:
        import_rembg()  # fail early, with the install command, before any work
    return [OURS] + ([REMBG] if vs is not None else [])


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
        model_name = model or settings.model
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


def print_quality(report: QualityReport) -> None:
    table = Table(
        title=f"Matte quality (model {report.model}, md5 {report.model_md5}; "
        f"IoU of alpha>0.5, MAE on 0..1, boundary F at {report.tolerance_px} px)"
    )
    for column in ("category", "contender", "n", "IoU", "MAE", "boundary F", "s/img", "paths"):
        table.add_column(column, justify="left" if column in ("category", "paths") else "right")
    for item in report.summaries:
        paths = ", ".join(f"{k} {v}" for k, v in sorted(item.methods.items()))
        table.add_row(
            item.category,
            item.contender,
            str(item.images),
            f"{item.iou:.4f}",
            f"{item.mae:.4f}",
            f"{item.boundary_f:.4f}",
            f"{item.seconds_per_image:.3f}",
            paths,
        )
    console.print(table)
    if report.agreement_iou:
        for category in CATEGORIES:
            if category in report.agreement_iou:
                console.print(
                    f"agreement IoU ours vs rembg masks, {category}: "
                    f"{report.agreement_iou[category]:.4f}"
                )


def print_worst(report: QualityReport, images: list[EvalImage], count: int) -> None:
    by_id = {image.id: image for image in images}
    table = Table(title=f"Our {count} lowest-IoU images per category")
    for column in ("image", "size", "IoU", "MAE", "boundary F", "path", "source", "background"):
        table.add_column(
            column, justify="right" if column in ("IoU", "MAE", "boundary F") else "left"
        )
    for category in CATEGORIES:
        for row in report.worst(category, OURS, count):
            image = by_id[row.id]
            table.add_row(
                row.id,
                f"{image.width}x{image.height} {image.image.suffix[1:]}",
                f"{row.iou:.3f}",
                f"{row.mae:.4f}",
                f"{row.boundary_f:.3f}",
                row.method,
                image.source,
                image.background,
            )
    console.print(table)


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
        model_name = model or settings.model
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


def print_speed(report: SpeedReport) -> None:
    both = OURS in report.contenders and REMBG in report.contenders
    setup = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in report.setup_s.items())
    table = Table(
        title=f"Whole pipeline, encoded bytes in -> PNG out (model {report.model}, md5 "
        f"{report.model_md5}, {report.repeat} calls per image; set-up: {setup})"
    )
    table.add_column("kind")
    table.add_column("MP", justify="right")
    for name in report.contenders:
        table.add_column(f"{name} img/s", justify="right")
        table.add_column(f"{name} p50 s", justify="right")
        table.add_column(f"{name} p95 s", justify="right")
    if both:
        table.add_column("img/s ours÷rembg", justify="right")
        table.add_column("p50 ours/rembg", justify="right")
        table.add_column("p95 ours/rembg", justify="right")
    table.add_column("our paths")
    groups = sorted({(s.kind, s.megapixels) for s in report.stats}, key=lambda g: (g[0], g[1]))
    for kind, megapixels in groups:
        row = [kind, f"{megapixels:g}"]
        for name in report.contenders:
            stats = report.get(kind, megapixels, name)
            if stats is None:
                row += ["-", "-", "-"]
            else:
                row += [f"{stats.images_per_s:.2f}", f"{stats.p50_s:.3f}", f"{stats.p95_s:.3f}"]
        ours = report.get(kind, megapixels, OURS)
        if both:
            peer = report.get(kind, megapixels, REMBG)
            if ours is not None and peer is not None and peer.images_per_s > 0:
                row += [
                    f"{ours.images_per_s / peer.images_per_s:.2f}x",
                    f"{ours.p50_s / peer.p50_s:.2f}",
                    f"{ours.p95_s / peer.p95_s:.2f}",
                ]
            else:
                row += ["-", "-", "-"]
        row.append(", ".join(f"{k} {v}" for k, v in sorted(ours.methods.items())) if ours else "-")
        table.add_row(*row)
    console.print(table)
    if report.peak_rss_mib:
        parts = [
            f"{name} {report.peak_rss_mib[name]:.0f} MiB (after set-up "
            f"{report.setup_rss_mib[name]:.0f} MiB)"
            for name in report.contenders
            if name in report.peak_rss_mib
        ]
        line = "peak RSS, each contender alone in a child process over the same images: "
        line += "; ".join(parts)
        if both and report.peak_rss_mib.get(REMBG):
            ratio = report.peak_rss_mib[OURS] / report.peak_rss_mib[REMBG]
            line += f"; ours/rembg {ratio:.2f}"
        console.print(line)


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
        model_name = model or settings.model
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


def print_memory(report: MemoryReport) -> None:
    marks = sorted({m for run in report.runs for m in run.checkpoints})
    shown = [m for m in marks if m in (1, 100, report.images) or m % 100 == 0]
    table = Table(
        title=f"RSS (MiB) over {report.images} images in sequence, each cutout written to disk "
        f"(model {report.model})"
    )
    table.add_column("contender")
    table.add_column("after set-up", justify="right")
    for mark in shown:
        table.add_column(f"@{mark}", justify="right")
    table.add_column("peak", justify="right")
    table.add_column(f"growth 100->{report.images}", justify="right")
    table.add_column(f"retained @100 -> @{report.images} (growth)", justify="right")
    table.add_column("s/img", justify="right")
    for run in report.runs:
        growth = retained = "-"
        if 100 in run.checkpoints and report.images in run.checkpoints:
            growth = f"{run.checkpoints[report.images] - run.checkpoints[100]:+.1f}"
        if 100 in run.retained and report.images in run.retained:
            first, last = run.retained[100], run.retained[report.images]
            retained = f"{first:.0f} -> {last:.0f} ({last - first:+.1f})"
        table.add_row(
            run.contender,
            f"{run.setup_rss_mib:.0f}",
            *[f"{run.checkpoints[m]:.0f}" if m in run.checkpoints else "-" for m in shown],
            f"{run.peak_rss_mib:.0f}",
            growth,
            retained,
            f"{run.seconds / run.images:.3f}",
        )
    console.print(table)
    peaks = {run.contender: run.peak_rss_mib for run in report.runs}
    if OURS in peaks and REMBG in peaks and peaks[REMBG] > 0:
        console.print(f"peak RSS ours/rembg: {peaks[OURS] / peaks[REMBG]:.2f}")
    console.print(
        "retained: RSS once the C heap's free pages are handed back (malloc_trim, both "
        "contenders alike); growth of the plain RSS also moves with the free heap kept between "
        "images"
    )
