"""The scaling report rendered: monthly cost by number of users as a table, JSON or Markdown, and
as a chart (the plot extra)."""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from stolentee.costs.fmt import quantity, usd, usd_exact
from stolentee.costs.report import FORMATS, md_table, money
from stolentee.costs.scale import ScaleReport
from stolentee.errors import ConfigurationError

_SCALE_COLUMNS = (
    "Scenario",
    "Users",
    "Backend",
    "Plan",
    "Total",
    "W/o fees",
    "Per user",
    "W/o fees",
)


_PER_USER = Decimal("0.001")


def _scale_rows(report: ScaleReport) -> list[list[str]]:
    rows = []
    for point in report.points:
        rows.append(
            [
                point.name,
                quantity(Decimal(point.users)),
                quantity(point.instances) + ("+" if point.beyond_table else ""),
                point.railway_plan,
                usd(point.total),
                usd(point.infrastructure),
                usd_exact(point.per_user_total.quantize(_PER_USER, rounding=ROUND_HALF_UP)),
                usd_exact(
                    point.per_user_infrastructure.quantize(_PER_USER, rounding=ROUND_HALF_UP)
                ),
            ]
        )
    return rows


def scale_dict(report: ScaleReport) -> dict[str, Any]:
    return {
        "policy": report.policy.name,
        "scaling_table": {
            "source": report.table.source,
            "bands": [
                {
                    "max_users": band.max_users,
                    "instances": [band.instances_min, band.instances_max],
                    "railway_plan": band.railway_plan,
                    "seed_cost": band.seed_cost,
                }
                for band in report.table.bands
            ],
        },
        "points": [
            {
                "scenario": point.name,
                "title": point.label,
                "users": point.users,
                "backend_instances": float(point.instances),
                "railway_plan": point.railway_plan,
                "beyond_table": point.beyond_table,
                "total": money(point.total),
                "payment_fees": money(point.payment_fees),
                "infrastructure_without_payment_fees": money(point.infrastructure),
                "per_user_total": float(point.per_user_total.quantize(Decimal("0.0001"))),
                "per_user_infrastructure": float(
                    point.per_user_infrastructure.quantize(Decimal("0.0001"))
                ),
            }
            for point in report.points
        ],
        "notes": list(report.notes),
    }


def render_scale(report: ScaleReport, fmt: str) -> str | RenderableType:
    if fmt == "json":
        return json.dumps(scale_dict(report), indent=2)
    heading = (
        f"Monthly cost (USD) by users, policy '{report.policy.name}'. Backend: instances from "
        "the seed's scaling table (upper end of each range; + beyond its last range). W/o "
        "fees: without payment fees. " + " ".join(report.notes)
    )
    if fmt == "markdown":
        return (
            "\n".join(
                [
                    "## Cost by users",
                    "",
                    heading,
                    "",
                    md_table(_SCALE_COLUMNS, _scale_rows(report), range(1, len(_SCALE_COLUMNS))),
                ]
            )
            + "\n"
        )
    if fmt == "table":
        table = Table(title="Cost by users", box=box.SIMPLE_HEAD, show_edge=False, padding=0)
        for index, column in enumerate(_SCALE_COLUMNS):
            table.add_column(column, justify="left" if index == 0 else "right", no_wrap=True)
        for row in _scale_rows(report):
            table.add_row(*(escape(cell) for cell in row))
        return Group(Text(heading), table)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")


def plot_scale(report: ScaleReport, path: str | Path) -> Path:
    """A PNG of monthly cost and cost per user against users, one line per scenario (solid:
    without payment fees; dashed: with them). Uses matplotlib's Agg canvas (no display)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # an optional extra: the server does not need it
        raise ConfigurationError(
            "--plot needs matplotlib: pip install 'stolentee[plot]' (make setup installs it)"
        ) from exc

    figure = Figure(figsize=(11, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    monthly, per_user = figure.subplots(1, 2)
    for name in report.scenario_names():
        points = [p for p in report.points if p.name == name]
        users = [p.users for p in points]
        label = points[0].label
        line = monthly.plot(
            users, [float(p.infrastructure) for p in points], marker="o", label=f"{label}"
        )
        color = line[0].get_color()
        monthly.plot(
            users,
            [float(p.total) for p in points],
            linestyle="--",
            color=color,
            label=f"{label}, with payment fees",
        )
        per_user.plot(
            users,
            [float(p.per_user_infrastructure) for p in points],
            marker="o",
            color=color,
            label=label,
        )
    monthly.set_title("Monthly cost")
    monthly.set_xlabel("users")
    monthly.set_ylabel("USD per month")
    monthly.set_yscale("log")
    monthly.grid(True, which="both", alpha=0.3)
    monthly.legend(fontsize="small")
    per_user.set_title("Cost per user (without payment fees)")
    per_user.set_xlabel("users")
    per_user.set_ylabel("USD per user per month")
    per_user.grid(True, alpha=0.3)
    per_user.legend(fontsize="small")
    figure.suptitle(f"stolentee costs scale (policy '{report.policy.name}')")
    figure.tight_layout()
    target = Path(path)
    figure.savefig(target, format="png")
    return target
