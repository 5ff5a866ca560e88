"""`stolentee remove`: batch over files and folders, skips, failures named, exit status."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from stolentee.cli import app, main
from stolentee.removal.base import OutputFormat
from stolentee.removal.batch import plan_batch

from .conftest import composite, draw_logo, photo_bytes

runner = CliRunner()


def make_inputs(root: Path) -> Path:
    folder = root / "in"
    (folder / "nested").mkdir(parents=True)
    composite(draw_logo(), (255, 255, 255)).save(folder / "logo.png")
    (folder / "nested" / "cat.png").write_bytes(photo_bytes("chelsea.png"))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    (folder / "notes.txt").write_text("not an image, and not picked up")
    return folder


def test_batch_processes_folders_names_failures_and_exits_1(tmp_path: Path) -> None:
    folder = make_inputs(tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(app, ["remove", str(folder), "-o", str(out), "--jobs", "2"])
    assert result.exit_code == 1
    assert "2 done, 0 skipped (already present), 1 failed" in result.output
    assert "broken.jpg" in result.output and "corrupt" in result.output
    assert Image.open(out / "logo.png").mode == "RGBA"
    assert Image.open(out / "nested" / "cat.png").size == (451, 300)
    assert not list(out.rglob("*.part"))

    again = runner.invoke(app, ["remove", str(folder / "logo.png"), "-o", str(out)])
    assert again.exit_code == 0
    assert "0 done, 1 skipped" in again.output

    redo = runner.invoke(app, ["remove", str(folder / "logo.png"), "-o", str(out), "--overwrite"])
    assert redo.exit_code == 0 and "1 done" in redo.output


def test_batch_options_reach_the_engine(tmp_path: Path) -> None:
    folder = make_inputs(tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "remove", str(folder / "logo.png"), "-o", str(out), "--format", "jpg",
            "--bg-color", "navy", "--crop", "--crop-margin", "10px",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    image = Image.open(out / "logo.jpg")
    assert image.format == "JPEG"
    assert image.size[0] < 600 and image.size[1] < 400  # cropped to the artwork + 10 px
    red, green, blue = image.getpixel((1, 1))[:3]
    assert blue > 100 and red < 30 and green < 30  # navy background


def test_bad_option_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_inputs(tmp_path)
    argv = ["stolentee", "remove", str(folder), "-o", str(tmp_path / "o"), "--bg-color", "nope"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    error = capsys.readouterr().err
    assert "invalid_bg_color" in error and "bg_color must be a hex colour" in error
    assert not (tmp_path / "o").exists()


def test_plan_reports_missing_inputs_and_collisions(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"1")
    (tmp_path / "b" / "x.jpg").write_bytes(b"2")
    plan = plan_batch(
        [tmp_path / "a" / "x.png", tmp_path / "b" / "x.jpg", tmp_path / "missing.png"],
        tmp_path / "out",
        OutputFormat.PNG,
    )
    assert [item.source.name for item in plan.items] == ["x.png"]
    reasons = dict((path.name, reason) for path, reason in plan.problems)
    assert "also the output of" in reasons["x.jpg"]
    assert reasons["missing.png"] == "no such file or folder"
