"""deploy/: the alert and recording rules load, each alert fires and stays quiet as its promtool
unit tests say, the example Prometheus config is valid, and the Alertmanager example passes
``amtool check-config`` and routes critical alerts to the pager (Debian's ``prometheus`` and
``prometheus-alertmanager`` packages; CI installs them)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus"
ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
PROMTOOL = shutil.which("promtool")
AMTOOL = shutil.which("amtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed")
needs_amtool = pytest.mark.skipif(AMTOOL is None, reason="amtool is not installed")


def run(tool: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    assert tool is not None
    return subprocess.run(  # our own command line
        [tool, *args], cwd=RULES, capture_output=True, text=True, check=False
    )


def alert_names() -> list[str]:
    rules = (RULES / "alerts.yml").read_text()
    return re.findall(r"^\s*- alert: (\w+)$", rules, flags=re.MULTILINE)


@needs_promtool
def test_the_rules_and_the_example_config_are_valid() -> None:
    checked = run(PROMTOOL, "check", "rules", "recording.yml", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = run(PROMTOOL, "check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


@needs_promtool
def test_every_alert_rule_fires_and_stays_quiet_as_its_unit_tests_say() -> None:
    tested = run(PROMTOOL, "test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_firing_and_a_quiet_test_a_severity_and_a_runbook_section() -> None:
    names = alert_names()
    assert len(names) >= 17
    tests = (RULES / "alerts_test.yml").read_text()
    # Each `alertname:` check block, with what it expects.
    checks = re.findall(
        r"alertname: (\w+)\n\s+exp_alerts:(.*?)(?=\n\s+- eval_time:|\n  - name:|\Z)", tests, re.S
    )
    for name in names:
        expected = [body for alert, body in checks if alert == name]
        assert any(body.strip().startswith("[]") for body in expected), f"{name}: no quiet test"
        assert any("exp_labels" in body for body in expected), f"{name}: no firing test"
    rules = (RULES / "alerts.yml").read_text()
    assert rules.count("severity: ") == len(names)
    assert rules.count("summary: ") == len(names)
    for url in set(re.findall(r'runbook_url: "([^"]+)"', rules)):
        page, _, anchor = url.partition("#")
        text = (ROOT / page).read_text().lower()
        assert f"# {anchor.replace('-', ' ')}" in text, f"no section for {url}"


def test_every_metric_the_rules_read_is_one_the_service_exports() -> None:
    """A renamed metric must not leave a rule watching nothing."""
    from stolentee import metrics

    exported = set(re.findall(r'"(stolentee_[a-z_]+)"', Path(metrics.__file__).read_text()))
    exported |= {f"stolentee_db_pool_{name}" for name in ("max", "total", "idle", "in_use",
                                                          "waiting")}  # fmt: skip
    text = (RULES / "recording.yml").read_text() + (RULES / "alerts.yml").read_text()
    read = set(re.findall(r"(?<![:\w])(stolentee_[a-z_]+)", text))  # not recorded names
    suffixes = ("_total", "_bucket", "_count", "_sum")
    for name in read:
        base = next((name[: -len(s)] for s in suffixes if name.endswith(s)), name)
        assert name in exported or base in exported, f"the rules read {name}, never exported"


@needs_amtool
def test_the_alertmanager_example_is_valid_and_pages_only_for_critical_alerts() -> None:
    checked = run(AMTOOL, "check-config", str(ALERTMANAGER))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "2 receivers" in checked.stdout

    def receiver(*labels: str) -> str:
        routed = run(AMTOOL, "config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels)
        assert routed.returncode == 0, routed.stderr
        return routed.stdout.strip()

    assert receiver("alertname=StolenteeQueueStalled", "severity=critical") == (
        "pagerduty-and-slack"
    )
    assert receiver("alertname=StolenteeQueueBacklog", "severity=warning") == "slack"
