"""The layout is the architecture: import contracts hold, modules stay small, the docs map it."""

from __future__ import annotations

import ast
import io
import re
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "stolentee"
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")


def _lint_imports() -> str:
    found = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(found).exists():
        pytest.fail("lint-imports is not installed: `pip install -e '.[dev]'`")
    return found


def test_import_contracts_hold() -> None:
    done = subprocess.run(
        [_lint_imports(), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def _modules() -> dict[str, int]:
    return {
        str(path.relative_to(PACKAGE)): len(path.read_text(encoding="utf-8").splitlines())
        for path in PACKAGE.rglob("*.py")
    }


# At most 8 modules over 400 lines (and none over 600): a change that grows another module past
# 400 splits something first.
MODULES_OVER_400_CEILING = 8


def test_no_module_is_a_god_module() -> None:
    modules = _modules()
    too_long = {name: lines for name, lines in modules.items() if lines > 600}
    assert not too_long, f"modules over 600 lines: {too_long}"
    long = sorted(name for name, lines in modules.items() if lines > 400)
    assert len(long) <= MODULES_OVER_400_CEILING, f"{len(long)} modules over 400 lines: {long}"


def test_every_package_is_on_the_architecture_map() -> None:
    """Every package folder, nested ones included, is placed in docs/architecture.md."""
    packages = sorted(
        str(init.parent.relative_to(PACKAGE)) for init in PACKAGE.rglob("__init__.py")
    )
    missing = [
        name
        for name in packages
        if name != "."
        and f"`{name}/`" not in ARCHITECTURE
        and f"{name.split('/')[-1]}/" not in ARCHITECTURE
    ]
    assert not missing, f"docs/architecture.md does not place: {missing}"


# Measured figures belong in benchmarks/ (dated); the code keeps the decision and names the entry.
_FIGURE = re.compile(
    r"\b(IoU|MAE|boundary F) \d|\b\d+(\.\d+)?x (faster|slower)\b"
    r"|~\d+(\.\d+)? ?(ms|µs|MB|MiB|GB)\b|\d+(\.\d+)? ?(ms|µs|MB|MiB) (instead of|->)"
)


def _comments_and_docstrings(text: str) -> list[tuple[int, str]]:
    found = [
        (token.start[0], token.string)
        for token in tokenize.generate_tokens(io.StringIO(text).readline)
        if token.type == tokenize.COMMENT
    ]
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            docstring = ast.get_docstring(node, clean=False)
            if docstring and node.body:
                found.append((node.body[0].lineno, docstring))
    return found


def test_measured_figures_live_in_benchmarks_not_in_the_code() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {match.group(0)}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, text in _comments_and_docstrings(path.read_text(encoding="utf-8"))
        for match in _FIGURE.finditer(text)
    ]
    assert not offenders, "figures to move to benchmarks/decisions.md:\n" + "\n".join(offenders)


def test_the_code_refers_to_no_file_outside_the_repository() -> None:
    outside = ("DESIGN.md", "pricing-facts.md", "seed/000_", "../shared")
    found = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted(PACKAGE.rglob("*"))
        if path.is_file() and path.suffix in (".py", ".toml", ".md", ".html", ".js")
        for name in outside
        if name in path.read_text(encoding="utf-8")
    ]
    assert not found, found
