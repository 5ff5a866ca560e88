"""Cost-model fixtures: the shipped price book and the seed's two scenarios."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from stolentee.costs.pricebook import Pricebook
from stolentee.costs.pricebook_files import load_pricebook
from stolentee.costs.profile import Profile
from stolentee.costs.profile_files import load_shipped_profile


@pytest.fixture(scope="session")
def book() -> Pricebook:
    return load_pricebook()


@pytest.fixture(scope="session")
def scenario_a() -> Profile:
    return load_shipped_profile("scenario_a")


@pytest.fixture(scope="session")
def scenario_b() -> Profile:
    return load_shipped_profile("scenario_b")


@pytest.fixture
def write_toml(tmp_path: Path) -> Callable[..., Path]:
    """Write a TOML text to a file in the test's directory and return its path."""

    def write(text: str, name: str = "file.toml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write
