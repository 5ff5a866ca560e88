"""Smoke tests of the benchmark runners on a tiny generated evaluation set.

A fake contender that returns the ground truth checks the scoring plumbing without a model; the
real engine (and rembg, when installed) run on three small images.
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from stolentee.bench import contenders, memory, quality, speed
from stolentee.cli.bench import bench_app
from stolentee.config import EngineSettings
from stolentee.errors import StolenteeError
from tests.fakes.models_dir import without_local_builds

runner = CliRunner()
SIZE = (160, 120)


def _disc_alpha(size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    """An anti-aliased disc: drawn at 4x and downsampled."""
    big = Image.new("L", (size[0] * 4, size[1] * 4), 0)
    ImageDraw.Draw(big).ellipse([v * 4 for v in box], fill=255)
    return big.resize(size, Image.Resampling.LANCZOS)


def _composite(
    background: np.ndarray, colour: tuple[int, int, int], alpha: Image.Image
) -> Image.Image:
    a = np.asarray(alpha, dtype=np.float32)[..., None] / 255.0
    fg = np.broadcast_to(np.array(colour, dtype=np.float32), background.shape)
    out = background.astype(np.float32) * (1 - a) + fg * a
    return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8), mode="RGB")


def make_eval_set(root: Path) -> Path:
    """Three images with known alpha: a disc on white (PNG), on a gradient (PNG), on a noisy
    'photo' (JPEG), and the manifest that lists them."""
    width, height = SIZE
    rng = np.random.default_rng(7)
    white = np.full((height, width, 3), 255, dtype=np.uint8)
    ramp = np.linspace(40, 220, width, dtype=np.float32)
    gradient = np.stack([np.broadcast_to(ramp, (height, width))] * 3, axis=-1).astype(np.uint8)
    noise = rng.integers(60, 200, size=(height, width, 3), dtype=np.uint8)
    cases = [
        ("graphic-solid", white, (200, 30, 40), "png"),
        ("graphic-gradient", gradient, (30, 60, 200), "png"),
        ("photo", noise, (230, 200, 20), "jpg"),
    ]
    entries = []
    for category, background, colour, fmt in cases:
        folder = root / category
        folder.mkdir(parents=True)
        alpha = _disc_alpha(SIZE, (40, 20, 120, 100))
        image = _composite(background, colour, alpha)
        image_path = folder / f"001.{fmt}"
        image.save(image_path, format="JPEG" if fmt == "jpg" else "PNG")
        alpha.save(folder / "001.alpha.png")
        extra = {}
        if category == "photo":  # photos carry their true colours (the edge colour metric)
            Image.new("RGB", SIZE, colour).save(folder / "001.fg.png")
            extra["foreground"] = f"{category}/001.fg.png"
        entries.append(
            {
                **extra,
                "id": f"{category}/001",
                "category": category,
                "image": f"{category}/001.{fmt}",
                "alpha": f"{category}/001.alpha.png",
                "width": width,
                "height": height,
                "format": fmt,
                "tags": [],
            }
        )
    (root / "manifest.json").write_text(json.dumps({"version": 1, "images": entries}))
    return root


@pytest.fixture
def eval_set(tmp_path: Path) -> Path:
    return make_eval_set(tmp_path / "data")


class Oracle:
    """A contender that returns the ground truth (or its inverse), to test the scoring."""

    def __init__(
        self, name: str, truths: dict[bytes, Path], model_file: Path, invert: bool
    ) -> None:
        self.name = name
        self.model = "oracle"
        self.model_file = model_file
        self._truths = truths
        self._invert = invert
        self.calls = 0

    def cutout(self, data: bytes) -> contenders.Cut:
        self.calls += 1
        with Image.open(self._truths[data]) as truth:
            alpha = truth.convert("L")
        if self._invert:
            alpha = alpha.point(lambda v: 255 - v)
        rgba = Image.new("RGBA", alpha.size, (0, 0, 0, 0))
        rgba.putalpha(alpha)
        return contenders.Cut(_png(rgba), "oracle")

    def close(self) -> None:
        pass


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _oracles(eval_set: Path, tmp_path: Path) -> tuple[Oracle, Oracle]:
    images = quality.load_eval_set(eval_set)
    truths = {image.read(): image.alpha for image in images}
    model_file = tmp_path / "model.onnx"
    model_file.write_bytes(b"same model")
    ours = Oracle(contenders.OURS, truths, model_file, invert=False)
    peer = Oracle(contenders.REMBG, truths, model_file, invert=True)
    return ours, peer


def test_missing_eval_set_names_the_build_command(tmp_path: Path) -> None:
    with pytest.raises(contenders.BenchError, match=r"build_eval_set\.py"):
        quality.load_eval_set(tmp_path / "nothing")
    result = runner.invoke(bench_app, ["quality", "--data", str(tmp_path / "nothing")])
    assert result.exit_code == 2
    assert "build_eval_set.py" in result.output


def test_load_eval_set_limits_and_filters(eval_set: Path) -> None:
    assert len(quality.load_eval_set(eval_set)) == 3
    only = quality.load_eval_set(eval_set, categories=["photo"], limit=1)
    assert [i.id for i in only] == ["photo/001"]
    with pytest.raises(contenders.BenchError, match="unknown categories"):
        quality.load_eval_set(eval_set, categories=["logos"])


def test_quality_scores_a_perfect_and_an_inverted_contender(eval_set: Path, tmp_path: Path) -> None:
    ours, peer = _oracles(eval_set, tmp_path)
    report = quality.run_quality([ours, peer], quality.load_eval_set(eval_set))
    assert report.model_md5 == contenders.file_md5(tmp_path / "model.onnx")
    for category in quality.CATEGORIES:
        perfect = report.summary(category, contenders.OURS)
        inverted = report.summary(category, contenders.REMBG)
        assert perfect is not None and inverted is not None
        assert (perfect.iou, perfect.mae, perfect.boundary_f) == (1.0, 0.0, 1.0)
        assert inverted.iou == 0.0
        assert inverted.mae > 0.2
        # The masks of the two oracles are complements: no agreement at all.
        assert report.agreement_iou[category] == 0.0
    assert ours.calls == peer.calls == 1 + 3  # one warm-up call, then every image once


def test_contenders_must_load_the_same_model(eval_set: Path, tmp_path: Path) -> None:
    ours, peer = _oracles(eval_set, tmp_path)
    other = tmp_path / "other.onnx"
    other.write_bytes(b"another model")
    peer.model_file = other
    with pytest.raises(contenders.BenchError, match="different model files"):
        quality.run_quality([ours, peer], quality.load_eval_set(eval_set))


def test_interleaved_timing_alternates_and_counts(eval_set: Path, tmp_path: Path) -> None:
    images = speed.prepare_images(eval_set, tmp_path / "speed", sizes_mp=(0.02, 0.05), per_size=1)
    assert {(i.kind, i.megapixels) for i in images} == {
        ("photo", 0.02),
        ("graphic", 0.02),
        ("photo", 0.05),
        ("graphic", 0.05),
    }
    for image in images:
        assert abs(image.width * image.height - image.megapixels * 1e6) < 0.02 * 1e6
        assert image.path.suffix == (".jpg" if image.kind == "photo" else ".png")
    ours, peer = _oracles(eval_set, tmp_path)
    # The oracles answer from a table keyed by the evaluation-set bytes; map the resized copies.
    source_alpha = {i.id: i.alpha for i in quality.load_eval_set(eval_set)}
    table = {image.path.read_bytes(): source_alpha[image.source] for image in images}
    ours._truths = peer._truths = table
    stats = speed.run_interleaved([ours, peer], images, repeat=3)
    assert len(stats) == 2 * 4
    assert all(s.calls == 3 for s in stats)
    assert all(s.images_per_s > 0 and s.p95_s >= s.p50_s > 0 for s in stats)
    warm_up = speed.WARM_UP_CALLS * 2  # per contender: each kind at the smallest size
    assert ours.calls == peer.calls == warm_up + 3 * len(images)


def test_prepare_images_needs_the_eval_set(tmp_path: Path) -> None:
    with pytest.raises(contenders.BenchError, match=r"build_eval_set\.py"):
        speed.prepare_images(tmp_path / "missing", tmp_path / "out")


def test_memory_checkpoints() -> None:
    assert memory.memory_checkpoints(500) == [1, 10, 50, 100, 200, 300, 400, 500]
    assert memory.memory_checkpoints(30) == [1, 10, 30]


# --- the real engine (and rembg) --------------------------------------------------------------


@pytest.fixture
def engine_settings(tmp_path_factory: pytest.TempPathFactory) -> EngineSettings:
    """The installed models as a fresh machine has them (no local int8 builds)."""
    settings = EngineSettings()
    try:
        from stolentee.removal import models

        models.locate(settings.models_dir, "u2netp")
    except StolenteeError as exc:
        pytest.skip(f"u2netp model not installed ({exc}); run `stolentee models install`")
    linked = without_local_builds(tmp_path_factory.mktemp("models"))
    return settings.model_copy(update={"models_dir": linked})


def test_quality_with_the_real_engine(eval_set: Path, engine_settings: EngineSettings) -> None:
    ours = contenders.make_contender(contenders.OURS, settings=engine_settings, model="u2netp")
    try:
        report = quality.run_quality([ours], quality.load_eval_set(eval_set))
    finally:
        ours.close()
    solid = report.summary("graphic-solid", contenders.OURS)
    assert solid is not None and solid.images == 1
    # A crisp disc on white: the graphic path must get it nearly exactly.
    assert solid.iou > 0.97
    assert all(0 <= s.mae <= 1 and 0 <= s.iou <= 1 for s in report.summaries)
    assert report.agreement_iou == {}
    photo = report.summary("photo", contenders.OURS)
    assert photo is not None and photo.edge_colour is not None and 0 <= photo.edge_colour < 0.2
    assert solid.edge_colour is None  # no true colours in that category


def test_quality_cli_with_the_bare_model_as_a_peer(
    eval_set: Path, engine_settings: EngineSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STOLENTEE_MODELS_DIR", str(engine_settings.models_dir))
    out = tmp_path / "quality.json"
    args = ["quality", "--vs", "bare", "--model", "fast", "--data", str(eval_set)]
    result = runner.invoke(bench_app, [*args, "--json", str(out)])
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    assert payload["contenders"] == ["stolentee", "bare"] and payload["model"] == "u2netp"
    bare = [s for s in payload["images"] if s["contender"] == "bare"]
    assert len(bare) == 3 and all(s["method"] == "model:u2netp" for s in bare)
    assert all(0 <= s["iou"] <= 1 for s in bare)


def test_rembg_reads_our_file_under_its_own_name(
    engine_settings: EngineSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our file name differs from rembg's (the npm IS-Net): linked into a temporary U2NET_HOME,
    removed again on close; rembg never downloads."""
    pytest.importorskip("rembg")
    monkeypatch.delenv("U2NET_HOME", raising=False)
    monkeypatch.delenv("MODEL_CHECKSUM_DISABLED", raising=False)
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    # A stand-in file under the isnet name (rembg only loads it here, never runs it).
    source = engine_settings.models_dir / "u2netp.onnx"
    (models_dir / "isnet-fp16.onnx").symlink_to(source)
    settings = engine_settings.model_copy(update={"models_dir": models_dir})
    peer = contenders.Rembg(settings=settings, model="isnet")
    home = Path(peer.model_file).parent
    try:
        assert Path(peer.model_file).name == "isnet-general-use.onnx"
        assert contenders.file_md5(Path(peer.model_file)) == contenders.file_md5(source)
        assert "U2NET_HOME" in os.environ
    finally:
        peer.close()
    assert not home.exists()
    assert "U2NET_HOME" not in os.environ and "MODEL_CHECKSUM_DISABLED" not in os.environ


def test_quality_cli_against_rembg(
    eval_set: Path, engine_settings: EngineSettings, tmp_path: Path
) -> None:
    pytest.importorskip("rembg")
    out = tmp_path / "quality.json"
    result = runner.invoke(
        bench_app, ["quality", "--vs", "rembg", "--data", str(eval_set), "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "agreement IoU" in result.output
    payload = json.loads(out.read_text())
    assert payload["contenders"] == ["stolentee", "rembg"]
    assert payload["model_md5"] == "8e83ca70e441ab06c318d82300c84806"
    assert {s["category"] for s in payload["summaries"]} == set(quality.CATEGORIES)
    assert 0.0 <= payload["agreement_iou"]["photo"] <= 1.0


def test_peak_rss_of_a_child_process(eval_set: Path, engine_settings: EngineSettings) -> None:
    paths = [image.image for image in quality.load_eval_set(eval_set)]
    child = speed.measure_in_child(
        contenders.OURS,
        settings=engine_settings,
        model="u2netp",
        paths=paths,
        count=4,
        checkpoints=[1, 4],
        write_outputs=True,
    )
    assert child.images == 4
    assert set(child.checkpoints) == {1, 4}
    if sys.platform.startswith("linux"):  # glibc: the heap is trimmed at each checkpoint
        assert set(child.retained) == {1, 4}
        assert all(child.retained[mark] <= child.checkpoints[mark] + 1 for mark in (1, 4))
    # The child's own high-water mark: above its set-up RSS, far below the test process's
    # pytest + numpy + onnxruntime footprint plus a copy (what ru_maxrss would report).
    assert 20 < child.setup_rss_mib <= child.peak_rss_mib < 2000


def test_missing_rembg_names_the_install_command(
    eval_set: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "rembg", None)  # makes `import rembg` raise ImportError
    with pytest.raises(contenders.BenchError, match=r"pip install 'rembg\[cpu\]'"):
        contenders.import_rembg()
    result = runner.invoke(bench_app, ["quality", "--vs", "rembg", "--data", str(eval_set)])
    assert result.exit_code == 2
    assert "rembg[cpu]" in result.output
