"""Rendering cost reports: rich tables for the terminal, JSON, Markdown, and a PNG chart.

:func:`report_dict` is the JSON shape (``GET /v1/costs/report`` can return it as is): money in
USD rounded to the cent, percentages to two decimals, every line with its formula, the savings,
and the differences between the seed's method and the price book.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from stolentee.costs.fmt import percent, usd
from stolentee.costs.model import (
    CostReport,
    Difference,
    LineItem,
    Savings,
    ScenarioCosts,
)

FORMATS = ("table", "json", "markdown")
UNVERIFIED_MARK = "*"


def money(value: Decimal) -> float:
    return float(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _pct(value: Decimal | None) -> float | None:
    if value is None:
        return None
    return float(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _amount(line: LineItem) -> str:
    return usd(line.amount) + ("" if line.verified else UNVERIFIED_MARK)


def _row_keys(scenarios: Sequence[ScenarioCosts]) -> list[tuple[str, str]]:
    """(key, name) of every line of any scenario, each scenario's lines in their order."""
    rows: list[tuple[str, str]] = []
    for scenario in scenarios:
        previous: str | None = None
        for line in (*scenario.lines, *scenario.omitted):
            keys = [key for key, _ in rows]
            if line.key not in keys:
                # after the line that precedes it in this scenario: the lines keep their order
                at = keys.index(previous) + 1 if previous is not None else 0
                rows.insert(at, (line.key, line.name))
            previous = line.key
    return rows


def _cell(scenario: ScenarioCosts, key: str) -> str:
    line = scenario.line(key)
    if line is not None:
        return _amount(line)
    if scenario.omitted_line(key) is not None:
        return "not listed"
    return "-"


def _summary_rows(scenarios: Sequence[ScenarioCosts]) -> list[tuple[str, list[str]]]:
    policy = scenarios[0].policy
    share_label = (
        "Infrastructure share of revenue (payment fees included)"
        if policy.payment_fees_in_infrastructure
        else "Infrastructure share of revenue (without payment fees)"
    )
    net_label = (
        "Net revenue (seed: revenue - total - payment fees)"
        if policy.net_subtracts_payment_fees_again
        else "Revenue - total (not a margin)"
    )

    def opt(value: Decimal | None, money: bool = True) -> str:
        if value is None:
            return "-"
        return usd(value) if money else percent(value)

    return [
        ("Total", [usd(s.total) for s in scenarios]),
        ("Payment fees", [usd(s.payment_fees) for s in scenarios]),
        ("Infrastructure without payment fees", [usd(s.infrastructure) for s in scenarios]),
        ("Revenue", [opt(s.revenue) for s in scenarios]),
        (share_label, [opt(s.infrastructure_share, money=False) for s in scenarios]),
        (net_label, [opt(s.net_revenue) for s in scenarios]),
        ("Net share of revenue", [opt(s.net_share, money=False) for s in scenarios]),
    ]


def _savings_rows(report: CostReport) -> list[tuple[str, list[str]]]:
    rows = []
    for item in (*report.savings, *report.reference_savings):
        rows.append((item.label, _savings_cells(item)))
    return rows


def _savings_cells(item: Savings) -> list[str]:
    return [
        usd(item.monthly),
        usd(item.yearly),
        usd(item.three_years),
        "-" if item.percent is None else percent(item.percent),
        "-"
        if item.percent_without_payment_fees is None
        else percent(item.percent_without_payment_fees),
    ]


_SAVINGS_COLUMNS = ("Comparison", "Monthly", "Yearly", "3 years", "% of total", "% w/o fees")
_DIFF_COLUMNS = ("#", "Id", "Scenario", "Subject", "As reported", "Corrected", "Reason")


def _heading(report: CostReport) -> str:
    oldest, newest = report.pricebook.as_of
    return (
        f"Monthly costs in USD, policy '{report.policy.name}' ({report.policy.description}). "
        f"Prices as of {oldest.isoformat()} .. {newest.isoformat()} "
        f"({', '.join(report.pricebook.files)}); {UNVERIFIED_MARK} rests on an unverified price."
    )


# --- rich ------------------------------------------------------------------------------------


def render_table(report: CostReport) -> RenderableType:
    """The report as rich renderables: side by side, savings, formulas, differences."""
    parts: list[RenderableType] = [Text(_heading(report), style="bold")]
    scenarios = report.scenarios
    side = Table(title="Line items", box=box.SIMPLE_HEAD, show_edge=False)
    side.add_column("Line", no_wrap=False)
    for scenario in scenarios:
        side.add_column(escape(scenario.label), justify="right", no_wrap=True)
    for key, name in _row_keys(scenarios):
        side.add_row(escape(name), *(_cell(s, key) for s in scenarios))
    side.add_section()
    for label, cells in _summary_rows(scenarios):
        side.add_row(label, *cells, style="bold" if label == "Total" else None)
    parts.append(side)
    if report.savings or report.reference_savings:
        table = Table(title="Savings", box=box.SIMPLE_HEAD, show_edge=False)
        for index, column in enumerate(_SAVINGS_COLUMNS):
            table.add_column(column, justify="left" if index == 0 else "right")
        for label, cells in _savings_rows(report):
            table.add_row(escape(label), *cells)
        parts.append(table)
    for scenario in scenarios:
        table = Table(
            title=f"{escape(scenario.label)}: formulas", box=box.SIMPLE_HEAD, show_edge=False
        )
        table.add_column("Line")
        table.add_column("Amount", justify="right", no_wrap=True)
        table.add_column("Formula and notes")
        for line in scenario.lines:
            detail = line.formula + "".join(f"\n- {note}" for note in line.notes)
            table.add_row(escape(line.name), _amount(line), escape(detail))
        for line in scenario.omitted:
            table.add_row(escape(line.name), "not listed", escape(f"left out ({line.formula})"))
        parts.append(table)
    if report.differences:
        table = Table(
            title="Differences between the seed's method (as reported) and the price book "
            "(corrected)",
            box=box.SIMPLE_HEAD,
            show_edge=False,
        )
        for column in _DIFF_COLUMNS:
            table.add_column(column, no_wrap=column in ("#", "Id"))
        for diff in report.differences:
            table.add_row(*(escape(cell) for cell in _diff_cells(diff)))
        parts.append(table)
    return Group(*parts)


def _diff_cells(diff: Difference) -> list[str]:
    return [
        "" if diff.seed_item is None else str(diff.seed_item),
        diff.id,
        diff.scenario,
        diff.subject,
        diff.as_reported,
        diff.corrected,
        diff.reason,
    ]


def print_report(report: CostReport, console: Console) -> None:
    console.print(render_table(report))


# --- JSON ------------------------------------------------------------------------------------


def _line_dict(line: LineItem) -> dict[str, Any]:
    return {
        "key": line.key,
        "name": line.name,
        "provider": line.provider,
        "category": line.category,
        "quantity": None if line.quantity is None else float(line.quantity),
        "unit": line.unit,
        "unit_price": None if line.unit_price is None else float(line.unit_price),
        "amount": money(line.amount),
        "exact_amount": str(line.exact_amount.normalize()),
        "formula": line.formula,
        "notes": list(line.notes),
        "verified": line.verified,
        "charges": [
            {
                "label": charge.label,
                "quantity": float(charge.quantity),
                "unit": charge.unit,
                "unit_price": float(charge.unit_price / charge.per),
                "amount": str(charge.amount.normalize()),
                "formula": charge.formula,
                "figures": list(charge.figures),
                "verified": charge.verified,
            }
            for charge in line.charges
        ],
    }


def scenario_dict(scenario: ScenarioCosts) -> dict[str, Any]:
    profile = scenario.profile
    return {
        "name": profile.name,
        "title": profile.title,
        "file": profile.file,
        "users": profile.users,
        "policy": scenario.policy.name,
        "lines": [_line_dict(line) for line in scenario.lines],
        "omitted_lines": [_line_dict(line) for line in scenario.omitted],
        "total": money(scenario.total),
        "payment_fees": money(scenario.payment_fees),
        "infrastructure_with_payment_fees": money(scenario.total),
        "infrastructure_without_payment_fees": money(scenario.infrastructure),
        "revenue": None if scenario.revenue is None else money(scenario.revenue),
        "infrastructure_share_percent": _pct(scenario.infrastructure_share),
        "net_revenue": None if scenario.net_revenue is None else money(scenario.net_revenue),
        "net_share_percent": _pct(scenario.net_share),
        "notes": list(scenario.notes),
    }


def savings_dict(item: Savings) -> dict[str, Any]:
    return {
        "label": item.label,
        "baseline": item.baseline,
        "candidate": item.candidate,
        "baseline_policy": item.baseline_policy,
        "candidate_policy": item.candidate_policy,
        "baseline_total": money(item.baseline_total),
        "candidate_total": money(item.candidate_total),
        "monthly": money(item.monthly),
        "yearly": money(item.yearly),
        "three_years": money(item.three_years),
        "percent": _pct(item.percent),
        "baseline_without_payment_fees": money(item.baseline_without_payment_fees),
        "percent_without_payment_fees": _pct(item.percent_without_payment_fees),
    }


def difference_dict(diff: Difference) -> dict[str, Any]:
    return {
        "id": diff.id,
        "seed_item": diff.seed_item,
        "scenario": diff.scenario,
        "subject": diff.subject,
        "as_reported": diff.as_reported,
        "corrected": diff.corrected,
        "delta_usd": None if diff.delta_usd is None else money(diff.delta_usd),
        "reason": diff.reason,
    }


def report_dict(report: CostReport) -> dict[str, Any]:
    oldest, newest = report.pricebook.as_of
    return {
        "currency": report.pricebook.currency,
        "policy": {"name": report.policy.name, "description": report.policy.description},
        "pricebook": {
            "files": list(report.pricebook.files),
            "as_of": {"oldest": oldest.isoformat(), "newest": newest.isoformat()},
            "unverified": [figure.ref for figure in report.pricebook.unverified()],
        },
        "scenarios": [scenario_dict(scenario) for scenario in report.scenarios],
        "savings": [savings_dict(item) for item in report.savings],
        "reference_savings": [savings_dict(item) for item in report.reference_savings],
        "differences": [difference_dict(diff) for diff in report.differences],
    }


def render_json(report: CostReport) -> str:
    return json.dumps(report_dict(report), indent=2)


# --- Markdown --------------------------------------------------------------------------------


def _md(cell: str) -> str:
    return cell.replace("|", "\\|").replace("\n", "<br>")


def md_table(
    header: Sequence[str], rows: Iterable[Sequence[str]], numeric: Collection[int] = ()
) -> str:
    """A Markdown table; the columns at the indexes ``numeric`` are right-aligned."""
    lines = ["| " + " | ".join(_md(h) for h in header) + " |"]
    lines.append(
        "|" + "|".join("---:" if i in numeric else "---" for i in range(len(header))) + "|"
    )
    lines.extend("| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows)
    return "\n".join(lines)


def render_markdown(report: CostReport) -> str:
    scenarios = report.scenarios
    out = ["## Monthly costs", "", _heading(report), ""]
    rows = [[name, *(_cell(s, key) for s in scenarios)] for key, name in _row_keys(scenarios)]
    rows.extend([f"**{label}**", *cells] for label, cells in _summary_rows(scenarios))
    out.append(
        md_table(["Line", *(s.label for s in scenarios)], rows, range(1, len(scenarios) + 1))
    )
    if report.savings or report.reference_savings:
        out += ["", "### Savings", ""]
        out.append(
            md_table(
                _SAVINGS_COLUMNS,
                ([label, *cells] for label, cells in _savings_rows(report)),
                range(1, len(_SAVINGS_COLUMNS)),
            )
        )
    for scenario in scenarios:
        out += ["", f"### {scenario.label}: formulas", ""]
        detail_rows = [
            [line.name, _amount(line), line.formula + "".join(f"\n- {n}" for n in line.notes)]
            for line in scenario.lines
        ]
        detail_rows.extend(
            [line.name, "not listed", f"left out ({line.formula})"] for line in scenario.omitted
        )
        out.append(md_table(["Line", "Amount", "Formula and notes"], detail_rows, (1,)))
    if report.differences:
        out += ["", "### Differences: the seed's method vs the price book", ""]
        out.append(md_table(_DIFF_COLUMNS, (_diff_cells(diff) for diff in report.differences)))
    return "\n".join(out) + "\n"


def render(report: CostReport, fmt: str) -> str | RenderableType:
    """The report in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "json":
        return render_json(report)
    if fmt == "markdown":
        return render_markdown(report)
    if fmt == "table":
        return render_table(report)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")


# --- scaling ---------------------------------------------------------------------------------
