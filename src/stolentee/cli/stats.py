"""``stolentee stats removal``: the removal statistics table, as ``GET /v1/stats/removal``.

On the embedded SQLite default pending migrations are applied first (as the server does on
start-up); on PostgreSQL run ``stolentee db upgrade`` when deploying.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Annotated, get_args

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from stolentee.cli.common import console, load_settings, print_error
from stolentee.errors import StolenteeError
from stolentee.removal.base import FailureKind
from stolentee.removal.stats.report import ProviderStats, StatsReport
from stolentee.removal.stats.store import (
    DEFAULT_RANGE_DAYS,
    DEFAULT_USD_PER_CREDIT,
    RemovalStatsStore,
    parse_day,
    resolve_range,
)

stats_app = typer.Typer(no_args_is_help=True)


@stats_app.callback()
def stats_main() -> None:
    """Statistics kept in the database (they survive restarts)."""


@contextmanager
def _stats_store() -> Iterator[RemovalStatsStore]:
    """A RemovalStatsStore on the configured database, migrated when the settings allow it."""
    from stolentee.runtime import build_runtime

    try:
        with build_runtime(load_settings(), "admin") as runtime:
            yield RemovalStatsStore(database=runtime.database)
    except StolenteeError as exc:
        print_error(exc)
        raise typer.Exit(1) from exc


@stats_app.command("removal")
def stats_removal(
    from_: Annotated[
        str | None,
        typer.Option(
            "--from",
            help=f"First UTC day, YYYY-MM-DD [default: {DEFAULT_RANGE_DAYS} days up to --to].",
            show_default=False,
        ),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to", help="Last UTC day, YYYY-MM-DD, included [default: today].", show_default=False
        ),
    ] = None,
    usd_per_credit: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Price of one Remove.bg credit in USD, for the dollars avoided (the seed's "
            "figure by default).",
        ),
    ] = DEFAULT_USD_PER_CREDIT,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON (as the API returns it).")
    ] = False,
) -> None:
    """Per provider: requests, successes, failures, latency percentiles, megapixels, credits."""
    with _stats_store() as store:
        start, end = resolve_range(
            None if from_ is None else parse_day(from_, name="--from"),
            None if to is None else parse_day(to, name="--to"),
            today=store.today(),
        )
        report = store.report(start=start, end=end, usd_per_credit=usd_per_credit)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
        return
    console.print(_table(report))
    failures = _failures_table(report)
    if failures is not None:
        console.print(failures)
    if report.models:
        console.print(_models_table(report))
    console.print(
        "Latency percentiles are estimated from log-spaced buckets (within 26 %); dollars at "
        f"${report.usd_per_credit:.2f} per Remove.bg credit."
    )


# Two-line headers keep the table within 80 columns.
_COLUMNS = (
    "Provider",
    "Reqs",
    "OK",
    "Fail",
    "OK %",
    "p50\nms",
    "p95\nms",
    "p99\nms",
    "MP",
    "Credits\ncharged",
    "Credits\navoided",
    "USD\navoided",
)


def _table(report: StatsReport) -> Table:
    table = Table(
        title=f"Removal providers, {_period(report.start, report.end)} (UTC)",
        box=box.SIMPLE_HEAD,
        padding=0,  # the box's blank divider separates columns: 80 columns suffice
        show_edge=False,
    )
    for column in _COLUMNS:
        if column == "Provider":
            table.add_column(column, no_wrap=True)
        else:
            table.add_column(column, justify="right", overflow="fold")
    for stats in report.providers:
        table.add_row(*_cells(stats))
    table.add_section()
    table.add_row(*_cells(report.totals), style="bold")
    return table


def _cells(stats: ProviderStats) -> list[str]:
    return [
        escape(stats.provider),
        str(stats.requests),
        str(stats.successes),
        str(stats.failures),
        "-" if stats.success_rate is None else f"{stats.success_rate * 100:.1f}",
        _ms(stats.latency_p50_ms),
        _ms(stats.latency_p95_ms),
        _ms(stats.latency_p99_ms),
        f"{stats.megapixels:.1f}",
        f"{stats.credits_charged:g}",
        f"{stats.credits_avoided:g}",
        f"{stats.usd_avoided:.2f}",
    ]


def _models_table(report: StatsReport) -> Table:
    """Successful removals per model ("none": no model ran, as the colour key or Remove.bg)."""
    table = Table(title="Removals per model", box=box.SIMPLE_HEAD, padding=0, show_edge=False)
    for column in ("Model", "Providers", "Removals", "Premium", "Mean ms", "Cr avoided", "$ saved"):
        if column in ("Model", "Providers"):
            table.add_column(column, overflow="fold")
        else:
            table.add_column(column, justify="right", overflow="fold")
    for item in report.models:
        table.add_row(
            escape(item.model),
            escape(", ".join(item.providers)),
            str(item.removals),
            str(item.premium_removals),
            f"{item.mean_latency_ms:.0f}",
            f"{item.credits_avoided:g}",
            f"{item.usd_saved:.2f}",
        )
    return table


def _failures_table(report: StatsReport) -> Table | None:
    """Failures by kind, for the providers that failed at all; None when none did."""
    failed = [stats for stats in report.providers if stats.failures]
    if not failed:
        return None
    kinds = [k for k in get_args(FailureKind) if any(s.failures_by_kind[k] for s in failed)]
    table = Table(title="Failures by kind", box=box.SIMPLE_HEAD, padding=0, show_edge=False)
    table.add_column("Provider", no_wrap=True)
    for kind in kinds:
        table.add_column(kind, justify="right")
    for stats in failed:
        table.add_row(escape(stats.provider), *(str(stats.failures_by_kind[k]) for k in kinds))
    return table


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _period(start: date, end: date) -> str:
    return start.isoformat() if start == end else f"{start.isoformat()} .. {end.isoformat()}"
