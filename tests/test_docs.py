"""Documentation stays true: every setting is in the README, the commands it names exist."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from stolentee.cli import app
from stolentee.config import iter_setting_docs

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_documented_in_readme() -> None:
    missing = [doc.env_var for doc in iter_setting_docs() if f"`{doc.env_var}`" not in README]
    assert not missing, f"settings missing from README's configuration table: {missing}"


def test_readme_documents_no_setting_that_does_not_exist() -> None:
    known = {doc.env_var for doc in iter_setting_docs()}
    table = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", table, flags=re.MULTILINE))
    assert documented, "README has no configuration table"
    assert documented <= known, f"README documents unknown settings: {documented - known}"


def test_readme_opens_with_the_two_commands() -> None:
    head = README[:3000]
    assert "make run" in head and "make test" in head


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_stolentee_commands_in_readme_exist() -> None:
    runner = CliRunner()
    blocks = "\n".join(re.findall(r"```(?:sh)?\n(.*?)```", README, flags=re.DOTALL))
    spans = "\n".join(re.findall(r"`(stolentee [^`]+)`", README))
    commands = set(
        re.findall(r"^stolentee ([a-z-]+(?: [a-z-]+)?)", blocks + "\n" + spans, re.MULTILINE)
    )
    assert len(commands) >= 5
    for command in sorted(commands):
        words = command.split()
        result = runner.invoke(app, [*words, "--help"])
        if result.exit_code != 0 and len(words) == 2:
            result = runner.invoke(app, [words[0], "--help"])
        assert result.exit_code == 0, f"`stolentee {command}` in README does not exist"
