"""``stolentee storage gc``: orphaned originals and cutouts are found, and deleted on request,
while everything a design names, anything young, and other prefixes stay (issue 23, item 1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stolentee.cli import app
from stolentee.config import Settings
from stolentee.designs.janitor import sweep_orphans
from stolentee.designs.store import new_design_id
from stolentee.runtime import build_runtime

runner = CliRunner()


def _seed(runtime: object) -> dict[str, str]:
    """A design with its original and cutout, and objects nobody names."""
    storage = runtime.storage  # type: ignore[attr-defined]
    designs = runtime.designs  # type: ignore[attr-defined]
    design_id = new_design_id()
    keys = {
        "original": f"uploads/{design_id}/original.png",
        "cutout": "assets/cutouts/" + "a" * 64 + ".png",
        "orphan_original": f"uploads/{new_design_id()}/original.png",
        "orphan_cutout": "assets/cutouts/" + "b" * 64 + ".png",
        "product": "assets/products/shirt.png",
    }
    for key in keys.values():
        storage.put(key, b"bytes of " + key.encode(), content_type="image/png")
    designs.create(
        design_id=design_id,
        owner="shop",
        original_key=keys["original"],
        original_content_type="image/png",
        original_width=1,
        original_height=1,
        kind="auto",
        output_format="png",
        idempotency_key=None,
    )
    assert designs.record_result(design_id, cutout_key=keys["cutout"], result={})
    return keys


def test_sweep_finds_only_old_unreferenced_design_objects(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STOLENTEE_DATA_DIR", str(tmp_path / "data"))
    with build_runtime(Settings(), "maintenance") as runtime:
        keys = _seed(runtime)
        young = sweep_orphans(database=runtime.database, storage=runtime.storage, dry_run=False)
        assert (young.scanned, young.orphans, young.kept_young) == (4, [], 2)

        later = datetime.now(UTC) + timedelta(days=2)
        found = sweep_orphans(database=runtime.database, storage=runtime.storage, now=later)
        assert sorted(info.key for info in found.orphans) == sorted(
            [keys["orphan_original"], keys["orphan_cutout"]]
        )
        assert found.deleted == 0 and runtime.storage.exists(keys["orphan_cutout"])  # dry run


def test_storage_gc_command_lists_then_deletes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STOLENTEE_DATA_DIR", str(tmp_path / "data"))
    with build_runtime(Settings(), "maintenance") as runtime:
        keys = _seed(runtime)

    listed = runner.invoke(app, ["storage", "gc", "--older-than", "0s"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    assert keys["orphan_original"] in listed.output and keys["orphan_cutout"] in listed.output
    assert keys["original"] not in listed.output
    assert "2 orphan(s)" in listed.output and "dry run" in listed.output

    deleted = runner.invoke(app, ["storage", "gc", "--older-than", "0s", "--delete"])
    assert deleted.exit_code == 0, deleted.output
    assert "2 orphan(s)" in deleted.output and "deleted" in deleted.output
    with build_runtime(Settings(), "maintenance") as runtime:
        storage = runtime.storage
        assert not storage.exists(keys["orphan_original"])
        assert not storage.exists(keys["orphan_cutout"])
        for kept in ("original", "cutout", "product"):
            assert storage.exists(keys[kept]), kept

    bad = runner.invoke(app, ["storage", "gc", "--older-than", "soon"])
    assert bad.exit_code == 2 and "not a duration" in bad.output
