"""deploy/prometheus: the alert rules load, and each one fires and stays quiet as its unit
tests say (promtool from Debian's ``prometheus`` package; CI installs it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

RULES = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(  # our own command line
        [PROMTOOL, *args], cwd=RULES, capture_output=True, text=True, check=False
    )


def test_the_alert_rules_are_valid() -> None:
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_alert_rule_fires_and_stays_quiet_as_its_unit_tests_say() -> None:
    tested = promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_rule_has_a_unit_test_and_a_runbook_section() -> None:
    rules = (RULES / "alerts.yml").read_text()
    tests = (RULES / "alerts_test.yml").read_text()
    names = [line.split(":", 1)[1].strip() for line in rules.splitlines() if "- alert:" in line]
    assert names
    for name in names:
        assert f"alertname: {name}" in tests, f"{name} has no promtool test"
    for url in {line.split(":", 1)[1].strip(' "') for line in rules.splitlines()
                if "runbook_url:" in line}:  # fmt: skip
        page, _, anchor = url.partition("#")
        text = (RULES.parent.parent / page).read_text().lower()
        assert f"# {anchor.replace('-', ' ')}" in text, f"no section for {url}"
