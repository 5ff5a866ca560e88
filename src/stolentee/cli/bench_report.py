"""The tables ``stolentee bench`` prints: quality per category, speed per size, memory."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from stolentee.bench.names import CATEGORIES, OURS, REMBG

if TYPE_CHECKING:  # the report types need numpy: only imported when a benchmark has run
    from stolentee.bench.memory import MemoryReport
    from stolentee.bench.quality import EvalImage, QualityReport
    from stolentee.bench.speed import SpeedReport

# Wide tables: when the output is not a terminal (a log file, CI), don't squeeze to 80 columns.
console = Console(width=None if sys.stdout.isatty() else 180)


def print_quality(report: QualityReport) -> None:
    table = Table(
        title=f"Matte quality (model {report.model}, md5 {report.model_md5}; "
        f"IoU of alpha>0.5, MAE on 0..1, boundary F at {report.tolerance_px} px; edge colour: "
        "the cutout over white and black against the truth's, at the edges, 0..1)"
    )
    columns = ("category", "contender", "n", "IoU", "MAE", "boundary F", "edge colour", "s/img")
    for column in (*columns, "paths"):
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
            "-" if item.edge_colour is None else f"{item.edge_colour:.4f}",
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
