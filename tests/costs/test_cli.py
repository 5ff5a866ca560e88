"""``stolentee costs``: report (table, JSON, Markdown), scale (with a PNG), prices, errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from stolentee.cli.costs import costs_app
from stolentee.costs.model import SEED_DISCREPANCIES
from stolentee.costs.model import TIMES as X

WriteToml = Callable[..., Path]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(costs_app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_report_as_reported_json_gives_the_seed_s_figures() -> None:
    code, output = invoke("report", "--as-reported", "--format", "json")
    assert code == 0, output
    data = json.loads(output)
    assert data["policy"]["name"] == "as-reported"
    a, b = data["scenarios"]
    assert (a["name"], a["total"]) == ("scenario_a", 4462.81)
    assert (b["name"], b["total"]) == ("scenario_b", 2426.84)
    assert b["infrastructure_without_payment_fees"] == 86.84
    assert b["infrastructure_with_payment_fees"] == 2426.84
    (saved,) = data["savings"]
    assert saved["monthly"] == 2035.97 and saved["percent"] == 45.62
    assert saved["yearly"] == 24431.64 and saved["three_years"] == 73294.92
    assert {d["id"] for d in data["differences"]} >= set(SEED_DISCREPANCIES.values())
    assert {d["seed_item"] for d in data["differences"]} >= set(range(1, 10))
    removebg = next(line for line in a["lines"] if line["key"] == "removebg")
    assert removebg["amount"] == 2001.0 and not removebg["verified"]
    assert "$2,001.00 as stated by the seed" in removebg["formula"]


def test_report_corrected_json() -> None:
    code, output = invoke("report", "--corrected", "-f", "json")
    assert code == 0, output
    data = json.loads(output)
    a, b = data["scenarios"]
    assert b["total"] == 2447.52 and a["total"] == 4461.81
    (reference,) = data["reference_savings"]
    assert reference["monthly"] == 2015.29 and round(reference["percent"], 1) == 45.2
    assert reference["baseline_policy"] == "as-reported"
    assert data["savings"][0]["monthly"] == 2014.29
    assert "removebg.subscription.usd_per_credit" in data["pricebook"]["unverified"]


def test_report_table_is_the_default() -> None:
    code, output = invoke("report", "--as-reported")
    assert code == 0, output
    for text in ("$4,462.81", "$2,426.84", "$2,035.97", "45.62%", "$24,431.64", "$73,294.92"):
        assert text in output
    assert "Differences between the seed's method" in output
    for ident in SEED_DISCREPANCIES.values():
        assert ident in output
    code, corrected = invoke("report")
    assert code == 0 and "$2,447.52" in corrected and "$2,015.29" in corrected
    assert "45.16%" in corrected  # 45.2%


def test_report_markdown() -> None:
    code, output = invoke("report", "--format", "markdown")
    assert code == 0, output
    assert output.startswith("## Monthly costs")
    assert "| Line | Scenario A (before) | Scenario B (after) |" in output
    assert "| **Total** | $4,461.81 | $2,447.52 |" in output
    assert "| 4 | domain-omitted | Scenario B (after) | Domain | not listed | $1.00 |" in output
    assert f"10,000 images {X} 1 credit {X} $0.20/credit = $2,000.00" in output


def test_report_your_own_profile_against_a_shipped_one(write_toml: WriteToml) -> None:
    path = write_toml(
        '[profile]\nname = "tiny"\ntitle = "Tiny shop"\n[plans]\nremovebg = "subscription"\n'
        "[removal]\nremovebg = { full = 50 }\n",
        "tiny.toml",
    )
    code, output = invoke("report", "-p", "scenario_b", "--profile", str(path), "-f", "json")
    assert code == 0, output
    data = json.loads(output)
    assert [s["name"] for s in data["scenarios"]] == ["scenario_b", "tiny"]
    assert data["scenarios"][1]["total"] == 10.0
    assert data["savings"][0]["monthly"] == 2437.52


def test_bad_profile_is_a_clear_error(write_toml: WriteToml) -> None:
    path = write_toml('[profile]\nname = "x"\n[storage]\nprovider = "r2"\n', "broken.toml")
    code, output = invoke("report", "--profile", str(path))
    assert code == 1
    assert "invalid_usage_profile" in output
    assert "broken.toml" in output and "storage.provider: must be one of" in output
    code, output = invoke("report", "--profile", "does-not-exist.toml")
    assert code == 1 and "does-not-exist.toml: no such file" in output


def test_bad_pricebook_is_a_clear_error(write_toml: WriteToml) -> None:
    path = write_toml("[providers.stripe.figures]\npercent_per_charge = { value = 3 }\n")
    code, output = invoke("report", "--pricebook", str(path))
    assert code == 1
    assert "invalid_pricebook" in output and "percent_per_charge.as_of: is missing" in output


def test_scale_prints_and_plots(tmp_path: Path) -> None:
    chart = tmp_path / "scale.png"
    code, output = invoke("scale", "--users", "100,500,1000,5000", "--plot", str(chart))
    assert code == 0, output
    assert "Cost by users" in output and "$2,447.52" in output
    data = chart.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    assert f"Chart written to {chart}" in output.replace("\n", "")


def test_scale_json_and_markdown() -> None:
    code, output = invoke("scale", "--users", "1000,2000", "-p", "scenario_b", "-f", "json")
    assert code == 0, output
    data = json.loads(output)
    first = data["points"][0]
    assert (first["users"], first["total"]) == (1000, 2447.52)
    assert data["points"][0]["per_user_total"] == 2.4475
    assert data["scaling_table"]["bands"][0]["railway_plan"] == "hobby"
    code, output = invoke("scale", "--users", "100", "-f", "markdown")
    assert code == 0 and output.startswith("## Cost by users")


def test_scale_rejects_bad_user_counts() -> None:
    code, output = invoke("scale", "--users", "100,lots")
    assert code == 2 and "got 'lots'" in output


def test_prices_lists_sources_and_verification() -> None:
    code, output = invoke("prices", "--unverified", "-f", "markdown")
    assert code == 0, output
    assert "removebg.subscription.usd_per_credit" in output and "| NO |" in output
    assert "cloudflare-r2.storage_usd_per_gb_month" not in output
    code, output = invoke("prices", "-f", "json")
    assert code == 0
    data = json.loads(output)
    assert data["providers"]["cloudflare-r2"]["figures"]["storage_usd_per_gb_month"]["value"] == (
        "0.015"
    )
    code, output = invoke("prices")
    assert code == 0 and "Price book" in output
