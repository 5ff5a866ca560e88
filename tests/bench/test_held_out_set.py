"""The held-out check set's builder (``benchmarks/build_held_out_set.py``): its sources."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from tests.bench.scripts import load_script


@pytest.fixture(scope="module")
def held_out() -> ModuleType:
    return load_script("build_held_out_set")


def test_sources_are_disjoint_from_the_development_set(held_out: ModuleType) -> None:
    dev = held_out.dev
    development = {package.name for package in dev.PACKAGES}
    assert development.isdisjoint(package.name for package in held_out.PACKAGES)
    assert set(held_out.CATEGORIES) <= set(dev.CATEGORIES)


def test_missing_packages_name_both_ways_to_get_them(
    held_out: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(held_out.dev, "_deb_version", lambda name: None)  # nothing installed
    with pytest.raises(held_out.dev.MissingSourcesError) as caught:
        held_out.locate(tmp_path / "cache")
    message = str(caught.value)
    for package in held_out.PACKAGES:
        assert package.name in message
    assert "apt-get install --no-install-recommends" in message
    assert "build_held_out_set.py --fetch" in message


def test_unpacked_packages_are_found_with_their_versions(
    held_out: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(held_out.dev, "_deb_version", lambda name: None)
    cache = tmp_path / "cache"
    for number, package in enumerate(held_out.PACKAGES):
        (cache / package.name / package.relative).mkdir(parents=True)
        (cache / package.name / "VERSION").write_text(f"1.{number}\n")
    sources = held_out.locate(cache)
    for number, package in enumerate(held_out.PACKAGES):
        assert sources.folders[package.name] == cache / package.name / package.relative
        assert sources.versions[package.name] == f"1.{number}"
