"""Documentation stays true: the configuration reference is what the settings declare, the README
is short and opens with the two commands, and every command and link the docs name exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stolentee.cli import app
from stolentee.config import configuration_markdown, iter_setting_docs

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = sorted((ROOT / "docs").glob("*.md"))
CONFIGURATION = ROOT / "docs" / "configuration.md"


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_configuration_reference_is_generated_from_the_settings() -> None:
    """Byte for byte what ``stolentee config docs`` prints; regenerate with
    ``stolentee config docs > docs/configuration.md``."""
    result = CliRunner().invoke(app, ["config", "docs"])
    assert result.exit_code == 0, result.output
    assert result.output == configuration_markdown()
    assert _text(CONFIGURATION) == result.output, (
        "docs/configuration.md is stale: run `stolentee config docs > docs/configuration.md`"
    )


def test_every_setting_is_in_the_configuration_reference() -> None:
    reference = _text(CONFIGURATION)
    missing = [
        doc.env_var for doc in iter_setting_docs() if f"| `{doc.env_var}` |" not in reference
    ]
    assert not missing, f"settings missing from docs/configuration.md: {missing}"
    assert all(doc.description for doc in iter_setting_docs()), "a setting has no description"


def test_readme_is_short_and_opens_with_the_two_commands() -> None:
    assert len(README.splitlines()) <= 250
    head = README[:3000]
    assert "make run" in head and "make test" in head


def test_readme_maps_every_document() -> None:
    for path in DOCS:
        assert f"docs/{path.name}" in README, f"README's documentation map lacks docs/{path.name}"


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


@pytest.mark.parametrize("path", [ROOT / "README.md", *DOCS], ids=lambda path: path.name)
def test_relative_links_point_at_files_of_the_repository(path: Path) -> None:
    text = _text(path)
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if "://" in target:
            continue
        assert (path.parent / target).exists(), f"{path.name} links to missing {target}"


@pytest.mark.parametrize("path", [ROOT / "README.md", *DOCS], ids=lambda path: path.name)
def test_docs_refer_to_nothing_outside_the_repository(path: Path) -> None:
    text = _text(path)
    for outside in ("DESIGN.md", "shared folder", "../shared", "pricing-facts.md", "seed/000_"):
        assert outside not in text, f"{path.name} refers to {outside}, outside the repository"


def _code_blocks(text: str) -> list[str]:
    """The fenced code blocks of a Markdown text (a fence opens and closes on its own line)."""
    blocks: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("```"):
            if current is None:
                current = []
            else:
                blocks.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def test_stolentee_commands_in_the_docs_exist() -> None:
    runner = CliRunner()
    text = "\n".join([README, *(_text(path) for path in DOCS)])
    blocks = "\n".join(_code_blocks(text))
    spans = "\n".join(re.findall(r"`(stolentee [^`]+)`", text))
    commands = set(
        re.findall(
            r"^(?:\.venv/bin/)?stolentee ([a-z-]+(?: [a-z-]+)?)",
            blocks + "\n" + spans,
            re.MULTILINE,
        )
    )
    assert len(commands) >= 10
    for command in sorted(commands):
        words = command.split()
        result = runner.invoke(app, [*words, "--help"])
        if result.exit_code != 0 and len(words) == 2:
            result = runner.invoke(app, [words[0], "--help"])
        assert result.exit_code == 0, f"`stolentee {command}` in the docs does not exist"
