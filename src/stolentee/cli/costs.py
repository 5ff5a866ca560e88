"""``stolentee costs``: the cost report, cost by users, and the price book.

``costs report`` prices usage profiles side by side (default: the seed's Scenario A and B) with
the savings and every difference between the seed's method and the price book; ``costs scale``
shows how monthly cost and cost per user grow with users (``--plot FILE.png`` draws it);
``costs prices`` lists the price book with the source, date and verification of every figure.
No settings or database are needed.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from stolentee.cli.common import console, err_console
from stolentee.costs.errors import CostDataError
from stolentee.costs.model import AS_REPORTED, CORRECTED, Policy, build_report
from stolentee.costs.pricebook import Figure, Pricebook
from stolentee.costs.pricebook_files import load_pricebook
from stolentee.costs.profile import Profile
from stolentee.costs.profile_files import default_profiles, resolve_profile, shipped_profile_names
from stolentee.costs.report import render
from stolentee.costs.scale import scale_costs
from stolentee.costs.scale_report import plot_scale, render_scale

costs_app = typer.Typer(
    help="Cost model: the seed's scenarios reproduced and corrected, your own usage, scaling.",
    no_args_is_help=True,
)


DEFAULT_USERS = "100,500,1000,5000"


class Format(StrEnum):
    TABLE = "table"
    JSON = "json"
    MARKDOWN = "markdown"


ProfileOption = Annotated[
    list[str] | None,
    typer.Option(
        "--profile",
        "-p",
        help="Usage profile: a TOML file, or a shipped one by name "
        f"({', '.join(shipped_profile_names())}). Repeat to compare; the first is the baseline. "
        "[default: the seed's Scenario A and B]",
        show_default=False,
    ),
]
PolicyOption = Annotated[
    bool,
    typer.Option(
        "--corrected/--as-reported",
        help="--corrected: the price book applied faithfully (free tiers, billing units, plan "
        "terms). --as-reported: the seed report's method, which reproduces its figures.",
    ),
]
FormatOption = Annotated[
    Format, typer.Option("--format", "-f", help="Output format.", case_sensitive=False)
]
PricebookOption = Annotated[
    Path | None,
    typer.Option(
        "--pricebook",
        help="A TOML file whose entries override the shipped price book (same layout).",
        show_default=False,
        dir_okay=False,
    ),
]


def _fail(exc: CostDataError) -> typer.Exit:
    err_console.print(f"[bold red]error[/] {exc.code}: {escape(exc.detail)}")
    return typer.Exit(1)


def _inputs(
    profiles: list[str] | None, pricebook: Path | None
) -> tuple[Pricebook, tuple[Profile, ...]]:
    book = load_pricebook(pricebook)
    chosen = tuple(resolve_profile(value) for value in profiles) if profiles else default_profiles()
    return book, chosen


def _policy(corrected: bool) -> Policy:
    return CORRECTED if corrected else AS_REPORTED


def _emit(output: object, fmt: Format) -> None:
    if fmt is Format.TABLE:
        console.print(output)
    else:
        typer.echo(str(output), nl=not str(output).endswith("\n"))


@costs_app.command("report")
def costs_report(
    profile: ProfileOption = None,
    corrected: PolicyOption = True,
    fmt: FormatOption = Format.TABLE,
    pricebook: PricebookOption = None,
) -> None:
    """Line items of each profile side by side, their formulas, the savings against the first
    profile, and every difference between the seed's method and the price book."""
    try:
        book, profiles = _inputs(profile, pricebook)
        report = build_report(book, profiles, policy=_policy(corrected))
    except CostDataError as exc:
        raise _fail(exc) from exc
    _emit(render(report, fmt.value), fmt)


def _users(value: str) -> list[int]:
    counts: list[int] = []
    for part in value.split(","):
        text = part.strip().replace("_", "")
        if not text.isdigit() or int(text) < 1:
            raise typer.BadParameter(
                f"give whole numbers of users >= 1, separated by commas; got {part.strip()!r}",
                param_hint="--users",
            )
        counts.append(int(text))
    return counts


@costs_app.command("scale")
def costs_scale(
    users: Annotated[
        str,
        typer.Option(help="Numbers of users, comma-separated."),
    ] = DEFAULT_USERS,
    profile: ProfileOption = None,
    corrected: PolicyOption = True,
    fmt: FormatOption = Format.TABLE,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            help="Also draw monthly cost and cost per user against users into this PNG file.",
            show_default=False,
            dir_okay=False,
        ),
    ] = None,
    pricebook: PricebookOption = None,
) -> None:
    """How monthly cost and cost per user grow with users (backend instances from the seed's
    scaling table; usage grows in proportion to users)."""
    counts = _users(users)
    try:
        book, profiles = _inputs(profile, pricebook)
        report = scale_costs(book, profiles, counts, policy=_policy(corrected))
    except CostDataError as exc:
        raise _fail(exc) from exc
    _emit(render_scale(report, fmt.value), fmt)
    if plot is not None:
        try:
            written = plot_scale(report, plot)
        except OSError as exc:
            err_console.print(f"[bold red]error[/] cannot write {escape(str(plot))}: {exc}")
            raise typer.Exit(1) from exc
        err_console.print(f"Chart written to {escape(str(written))}.")


@costs_app.command("prices")
def costs_prices(
    pricebook: PricebookOption = None,
    fmt: FormatOption = Format.TABLE,
    unverified: Annotated[
        bool, typer.Option("--unverified", help="Only the figures not verified at the source.")
    ] = False,
) -> None:
    """The price book: every figure with its unit, source, date and whether it is verified."""
    try:
        book = load_pricebook(pricebook)
    except CostDataError as exc:
        raise _fail(exc) from exc
    figures = [f for f in book.iter_figures() if not (unverified and f.verified)]
    if fmt is Format.JSON:
        import json

        data = book.as_dict()
        if unverified:
            data = {"files": data["files"], "figures": [f.as_dict() for f in figures]}
        typer.echo(json.dumps(data, indent=2))
        return
    rows = [_price_row(book, figure) for figure in figures]
    header = ("Figure", "Value", "Unit", "Source", "As of", "Verified")
    if fmt is Format.MARKDOWN:
        lines = ["| " + " | ".join(header) + " |", "|---|---:|---|---|---|---|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        typer.echo("\n".join(lines))
        return
    table = Table(
        title=f"Price book ({', '.join(book.files)})", box=box.SIMPLE_HEAD, show_edge=False
    )
    for index, column in enumerate(header):
        table.add_column(column, justify="right" if index == 1 else "left")
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    console.print(table)


def _price_row(book: Pricebook, figure: Figure) -> list[str]:
    source = book.sources.get(figure.source)
    return [
        figure.ref,
        str(figure.value),
        figure.unit,
        source.title if source is not None else figure.source,
        figure.as_of.isoformat(),
        "yes" if figure.verified else "NO",
    ]
