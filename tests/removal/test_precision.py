"""Model precision on small synthetic models built here: fp16 weights upcast at load (same
outputs, no casts, the side outputs dropped) and the int8 build with its agreement gate (installed
with its record only above the floor, served by the quality tier, refused below it)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from stolentee.config import EngineSettings
from stolentee.removal import models
from stolentee.removal.engine import RemovalEngine
from stolentee.removal.model_record import read_record, record_path
from stolentee.removal.precision import int8
from stolentee.removal.precision.upcast import has_fp16, to_float32

SIZE = 32
HEAD = ("/head/Conv", "/head/Sigmoid")


def tiny_model(*, fp16: bool, opset: int = 17) -> onnx.ModelProto:
    """A 2-conv matting network: features (mean of a 3x3 neighbourhood, times a fp16 constant),
    a 1x1 head to logits, a sigmoid; with a side output, as the U-2-Net and IS-Net files have.
    In fp16 it is cast at the input and the outputs, as those files are."""
    dtype = np.float16 if fp16 else np.float32
    weights = [
        numpy_helper.from_array(np.full((4, 3, 3, 3), 1.0 / 27, dtype), "w1"),
        numpy_helper.from_array(np.full((1, 4, 1, 1), 150.0 / 4, dtype), "w2"),
        numpy_helper.from_array(np.array([-3.0], dtype), "b2"),
    ]
    nodes = []
    x = "input"
    if fp16:
        nodes.append(helper.make_node("Cast", ["input"], ["x16"], to=TensorProto.FLOAT16))
        x = "x16"
    gain = helper.make_tensor("gain", TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT, [], [1.0])
    nodes += [
        helper.make_node("Conv", [x, "w1"], ["f"], pads=[1, 1, 1, 1], name="/features/Conv"),
        helper.make_node("Constant", [], ["k"], value=gain, name="/features/Gain"),
        helper.make_node("Mul", ["f", "k"], ["g"], name="/features/Mul"),
        helper.make_node("Relu", ["g"], ["r"], name="/features/Relu"),
        helper.make_node("Conv", ["g", "w2", "b2"], ["logits"], name="/head/Conv"),
        helper.make_node("Sigmoid", ["logits"], ["p"], name="/head/Sigmoid"),
    ]
    if fp16:
        nodes.append(helper.make_node("Cast", ["p"], ["output"], to=TensorProto.FLOAT))
        nodes.append(helper.make_node("Cast", ["r"], ["side"], to=TensorProto.FLOAT))
    else:
        nodes.append(helper.make_node("Identity", ["p"], ["output"]))
        nodes.append(helper.make_node("Identity", ["r"], ["side"]))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [
            helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, SIZE, SIZE]),
            helper.make_tensor_value_info("side", TensorProto.FLOAT, [1, 4, SIZE, SIZE]),
        ],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def write_photos(folder: Path, count: int = 10) -> list[Path]:
    """Noisy diagonal gradients with a dark corner: the matte's edge runs across each."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    height, width = 96, 128
    across = np.linspace(0, 1, width)[None, :, None]
    down = np.linspace(0, 1, height)[:, None, None]
    for index in range(count):
        tilt = 0.3 + 0.05 * index
        pixels = 0.25 + 0.5 * (across * (1 - tilt) + down * tilt)
        pixels = pixels + rng.normal(0, 0.02, (height, width, 3))
        pixels[: height // 3, : width // 4] = 0.0
        image = (np.clip(pixels, 0, 1) * 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"{index:03d}.png")
    # The development set's masks and true foregrounds sit beside its photos.
    Image.new("L", (8, 8)).save(folder / "000.alpha.png")
    return sorted(folder.glob("[0-9][0-9][0-9].png"))


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[models.ModelSpec, Path]:
    """The fp16 tiny model installed in its own models directory, with its int8 build's spec."""
    onnx.save(tiny_model(fp16=True), str(tmp_path / "tiny.onnx"))
    spec = models.ModelSpec(
        "tiny", "tiny.onnx", models.file_md5(tmp_path / "tiny.onnx"), 0.0, SIZE,
        (0.5, 0.5, 0.5), (1.0, 1.0, 1.0), models.Activation.MINMAX, "", "test model",
        fp16_weights=True, int8="tiny-int8", int8_float_nodes=HEAD,
    )  # fmt: skip
    built = models.ModelSpec(
        "tiny-int8", "tiny-int8.onnx", "", 0.0, SIZE, (0.5, 0.5, 0.5), (1.0, 1.0, 1.0),
        models.Activation.MINMAX, "", "test model, int8", derived_from="tiny",
    )  # fmt: skip
    monkeypatch.setitem(models.MODELS, "tiny", spec)
    monkeypatch.setitem(models.MODELS, "tiny-int8", built)
    return spec, tmp_path


def _run(model: str | bytes, batch: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return session.run(names, {"input": batch})


def test_upcast_gives_the_same_matte_without_casts_or_side_outputs() -> None:
    original = tiny_model(fp16=True)
    assert has_fp16(original)
    batch = np.random.default_rng(0).random((1, 3, SIZE, SIZE), dtype=np.float32) - 0.5
    expected = _run(original.SerializeToString(), batch)[0]
    upcast = to_float32(tiny_model(fp16=True))
    assert not has_fp16(upcast)
    assert [node.op_type for node in upcast.graph.node].count("Cast") == 0
    assert [output.name for output in upcast.graph.output] == ["output"]
    assert "/features/Relu" not in {node.name for node in upcast.graph.node}  # side branch gone
    constant = next(n for n in upcast.graph.node if n.op_type == "Constant")
    assert constant.attribute[0].t.data_type == TensorProto.FLOAT
    outputs = _run(upcast.SerializeToString(), batch)
    assert len(outputs) == 1
    # fp16 arithmetic against float32: the weights are the same, the rounding is not.
    np.testing.assert_allclose(outputs[0], expected, atol=2e-3)


def test_the_engine_serves_an_fp16_file_through_the_upcast_graph(
    tiny: tuple[models.ModelSpec, Path],
) -> None:
    spec, folder = tiny
    engine = RemovalEngine(settings=EngineSettings(model="tiny", models_dir=folder))
    session = engine.session()
    assert [output.name for output in session.inference.session.get_outputs()] == ["output"]
    rgb = np.asarray(Image.open(write_photos(folder / "photos", 1)[0]).convert("RGB"))
    small = session.model_input(rgb)
    batch = ((small.astype(np.float32) / small.max()) - 0.5).transpose(2, 0, 1)[None]
    raw = _run(str(folder / spec.filename), np.ascontiguousarray(batch))[0][0, 0]
    expected = (raw - raw.min()) / (raw.max() - raw.min()) * 255
    matte = session.infer(small)
    assert np.abs(matte.astype(np.float32) - expected).max() <= 2


def test_int8_build_passes_its_floor_and_then_serves_in_place_of_the_float_model(
    tiny: tuple[models.ModelSpec, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, folder = tiny
    photos = write_photos(folder / "photos")
    assert len(int8.find_photos(folder / "photos")) == len(photos)  # the mask is not a photo
    lines: list[str] = []
    record = int8.build(spec, models.MODELS["tiny-int8"], folder, photos, report=lines.append)
    target = folder / "tiny-int8.onnx"
    assert record.passed and record.agreement_min >= int8.DEFAULT_FLOOR
    assert record.calibration_images == 4 and record.evaluation_images == 6
    assert read_record(target) == record
    assert record.md5 == models.file_md5(target) and record.source_md5 == spec.md5
    assert any("agreement with tiny" in line for line in lines)
    assert not list(folder.glob(".quantize-*"))  # the work files are gone
    ops = {node.op_type for node in onnx.load(str(target)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    kept = {node.name for node in onnx.load(str(target)).graph.node if node.name in HEAD}
    assert kept == set(HEAD)  # the head is still there, unquantised
    assert models.model_state(folder, models.MODELS["tiny-int8"]) is models.ModelState.INSTALLED

    monkeypatch.setattr(models, "QUALITY_ORDER", ("tiny-int8", "tiny"))
    assert models.resolve(folder, "quality") == "tiny-int8"
    # Computed in bfloat16, a float model goes before its int8 build; not one whose spec
    # keeps it in float32.
    assert models.resolve(folder, "quality", bfloat16=True) == "tiny-int8"
    monkeypatch.setitem(models.MODELS, "tiny", replace(spec, bfloat16=True))
    assert models.resolve(folder, "quality", bfloat16=True) == "tiny"
    assert models.resolve(folder, "quality", bfloat16=False) == "tiny-int8"
    monkeypatch.setitem(models.MODELS, "tiny", spec)
    engine = RemovalEngine(settings=EngineSettings(model="tiny", models_dir=folder))
    rgb = np.asarray(Image.open(photos[-1]).convert("RGB"))
    float_mask = engine.session("tiny").predict(rgb) > 127
    int8_mask = engine.session("quality").predict(rgb) > 127
    assert (float_mask == int8_mask).mean() > 0.98


def test_int8_build_of_an_opset_11_file_brings_it_to_opset_13_for_per_channel_qdq(
    tiny: tuple[models.ModelSpec, Path],
) -> None:
    """u2netp's file is opset 11, whose DequantizeLinear has no per-channel axis."""
    spec, folder = tiny
    onnx.save(tiny_model(fp16=False, opset=11), str(folder / "tiny.onnx"))
    spec = models.ModelSpec(**{**_fields(spec), "md5": models.file_md5(folder / "tiny.onnx")})
    record = int8.build(spec, models.MODELS["tiny-int8"], folder, write_photos(folder / "photos"))
    assert record.passed
    built = onnx.load(str(folder / "tiny-int8.onnx"))
    assert max(o.version for o in built.opset_import if o.domain in ("", "ai.onnx")) >= 13


def test_a_build_record_that_does_not_match_keeps_the_int8_model_out_of_service(
    tiny: tuple[models.ModelSpec, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, folder = tiny
    int8.build(spec, models.MODELS["tiny-int8"], folder, write_photos(folder / "photos"))
    built = models.MODELS["tiny-int8"]
    target = folder / built.filename
    monkeypatch.setattr(models, "QUALITY_ORDER", ("tiny-int8", "tiny"))
    record = json.loads(record_path(target).read_text())

    record_path(target).write_text(json.dumps({**record, "passed": False}))
    assert models.model_state(folder, built) is models.ModelState.CORRUPT
    assert models.resolve(folder, "quality") == "tiny"  # the float file serves instead

    record_path(target).write_text(json.dumps(record))
    target.write_bytes(target.read_bytes()[:-10])  # truncated: its md5 no longer matches
    assert models.model_state(folder, built) is models.ModelState.CORRUPT
    with pytest.raises(models.ModelNotInstalledError, match="models quantize tiny"):
        models.locate(folder, "tiny-int8")

    record_path(target).unlink()
    assert models.model_state(folder, built, verify=False) is models.ModelState.CORRUPT
    with pytest.raises(models.ModelInstallError, match="models quantize tiny"):
        models.install(folder, "tiny-int8", models_url="http://127.0.0.1:9")


def test_int8_build_below_the_floor_is_refused_and_installs_nothing(
    tiny: tuple[models.ModelSpec, Path],
) -> None:
    spec, folder = tiny
    photos = write_photos(folder / "photos")
    # The tiny model's int8 masks agree at about 0.995-0.998 (measured); a floor of 1.0 asks
    # for more than any quantisation of it gives.
    with pytest.raises(int8.QuantizeError, match=r"does not reach the agreement floor 1\.0"):
        int8.build(spec, models.MODELS["tiny-int8"], folder, photos, floor=1.0)
    assert not list(folder.glob("tiny-int8*")) and not list(folder.glob(".quantize-*"))


def test_int8_build_refuses_too_few_photos_and_a_graph_without_its_float_nodes(
    tiny: tuple[models.ModelSpec, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, folder = tiny
    photos = write_photos(folder / "photos")
    with pytest.raises(int8.QuantizeError, match="at least 8"):
        int8.build(spec, models.MODELS["tiny-int8"], folder, photos[:5])
    renamed = models.ModelSpec(**{**_fields(spec), "int8_float_nodes": ("/side1/Conv",)})
    with pytest.raises(int8.QuantizeError, match="no node /side1/Conv"):
        int8.build(renamed, models.MODELS["tiny-int8"], folder, photos)
    (folder / "photos" / "broken.jpg").write_bytes(b"not a photo")
    with pytest.raises(int8.QuantizeError, match="cannot read the photo"):
        int8.build(
            spec, models.MODELS["tiny-int8"], folder, [*photos, folder / "photos" / "broken.jpg"]
        )
    with pytest.raises(int8.QuantizeError, match="not a folder"):
        int8.find_photos(folder / "nowhere")
    assert not (folder / "tiny-int8.onnx").exists()


def _fields(spec: models.ModelSpec) -> dict[str, object]:
    return {name: getattr(spec, name) for name in spec.__slots__}  # type: ignore[attr-defined]


def test_upcast_keeps_casts_from_integers_and_turns_them_to_float32() -> None:
    """A cast from shape arithmetic (int64 -> fp16, as u2netp's resize scales are made) stays,
    aimed at float32; a float <-> fp16 cast goes."""
    scale = numpy_helper.from_array(np.array([2], np.int64), "two")
    nodes = [
        helper.make_node("Cast", ["input"], ["x16"], to=TensorProto.FLOAT16),
        helper.make_node("Cast", ["two"], ["two16"], to=TensorProto.FLOAT16),
        helper.make_node("Mul", ["x16", "two16"], ["y16"]),
        helper.make_node("Cast", ["y16"], ["output"], to=TensorProto.FLOAT),
    ]
    graph = helper.make_graph(
        nodes,
        "casts",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3])],
        [scale],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    upcast = to_float32(model)
    casts = [node for node in upcast.graph.node if node.op_type == "Cast"]
    assert [node.input[0] for node in casts] == ["two"]
    assert casts[0].attribute[0].i == TensorProto.FLOAT
    batch = np.array([[1.0, -2.5, 3.0]], np.float32)
    np.testing.assert_allclose(_run(upcast.SerializeToString(), batch)[0], batch * 2)


def test_models_quantize_command_builds_reports_and_refuses(
    tiny: tuple[models.ModelSpec, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from stolentee.cli import app

    _spec, folder = tiny
    write_photos(folder / "photos")
    monkeypatch.setenv("STOLENTEE_MODELS_DIR", str(folder))
    runner = CliRunner()
    env = {"COLUMNS": "200"}
    no_build = runner.invoke(app, ["models", "quantize", "u2net"], env=env)
    assert no_build.exit_code != 0 and "has no int8 build" in no_build.output
    missing = runner.invoke(
        app, ["models", "quantize", "tiny", "--images", str(folder / "nowhere")], env=env
    )
    # The entry point (cli.main) prints a StolenteeError as one line and exits 1.
    assert isinstance(missing.exception, int8.QuantizeError)
    assert "not a folder of photos" in str(missing.exception)
    refused = runner.invoke(
        app, ["models", "quantize", "tiny", "--images", str(folder / "photos"), "--floor", "1"]
    )
    assert isinstance(refused.exception, int8.QuantizeError)
    assert "nothing was installed" in str(refused.exception)
    built = runner.invoke(app, ["models", "quantize", "tiny", "--images", str(folder / "photos")])
    assert built.exit_code == 0, built.output
    assert "tiny-int8: installed at" in built.output and "x the float model" in built.output
    listed = runner.invoke(app, ["models", "list"], env=env)
    assert "tiny-int8: built" in listed.output and "passed the agreement floor" in listed.output


def test_a_model_with_bounded_inferences_runs_one_at_a_time(
    tiny: tuple[models.ModelSpec, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """IS-Net runs one inference at a time, whichever request threads ask; the others wait."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    spec, folder = tiny
    monkeypatch.setitem(
        models.MODELS, "tiny", models.ModelSpec(**{**_fields(spec), "parallel_inferences": 1})
    )
    engine = RemovalEngine(settings=EngineSettings(model="tiny", models_dir=folder))
    session = engine.session()
    real_run = session.inference.run
    seen: list[str] = []
    running = 0
    most = 0
    lock = threading.Lock()

    def run(*args: object, **kwargs: object) -> object:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
            seen.append(threading.current_thread().name)
        try:
            time.sleep(0.02)  # long enough for the other callers to arrive
            return real_run(*args, **kwargs)  # type: ignore[arg-type]
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(session.inference, "run", run)
    rgb = np.asarray(Image.open(write_photos(folder / "photos", 1)[0]).convert("RGB"))
    with ThreadPoolExecutor(4) as callers:
        mattes = list(callers.map(lambda _: session.predict(rgb), range(8)))
    assert len(seen) == 8 and len(set(seen)) > 1  # asked from several threads
    assert most == 1
    assert all(np.array_equal(matte, mattes[0]) for matte in mattes)


def test_bench_peers_of_a_built_model_compare_the_weights_it_was_built_from(
    tiny: tuple[models.ModelSpec, Path],
) -> None:
    from stolentee.bench.contenders import file_md5, weights_md5

    spec, folder = tiny
    int8.build(spec, models.MODELS["tiny-int8"], folder, write_photos(folder / "photos"))
    built = folder / "tiny-int8.onnx"
    assert file_md5(built) != spec.md5
    assert weights_md5(built) == spec.md5  # the float file rembg and the bare model run
    assert weights_md5(folder / "tiny.onnx") == spec.md5


def test_a_floor_of_its_own_for_the_lowest_photo(tiny: tuple[models.ModelSpec, Path]) -> None:
    """``lowest_floor`` judges the lowest photo on its own; the mean keeps ``floor``."""
    spec, folder = tiny
    photos = write_photos(folder / "photos")
    target = models.MODELS["tiny-int8"]
    # The tiny model's int8 masks agree at about 0.995-0.998: no photo reaches 1.0.
    with pytest.raises(int8.QuantizeError, match=r"floor 0\.99 \(lowest 1\.0\)"):
        int8.build(spec, target, folder, photos, floor=0.99, lowest_floor=1.0)
    with pytest.raises(int8.QuantizeError, match=r"floor 1\.0 \(lowest 0\.5\)"):
        int8.build(spec, target, folder, photos, floor=1.0, lowest_floor=0.5)
    assert not list(folder.glob("tiny-int8*"))
    record = int8.build(spec, target, folder, photos, floor=0.99, lowest_floor=0.9)
    assert record.passed and record.lowest_floor == 0.9 and record.photo_floor == 0.9
    assert read_record(folder / "tiny-int8.onnx") == record
    # A record written before the lowest photo had a floor of its own still reads.
    path = record_path(folder / "tiny-int8.onnx")
    older = {k: v for k, v in json.loads(path.read_text()).items() if k != "lowest_floor"}
    path.write_text(json.dumps(older))
    again = read_record(folder / "tiny-int8.onnx")
    assert again is not None and again.lowest_floor is None and again.photo_floor == 0.99


def test_the_fast_tier_is_served_by_u2netps_int8_build_once_it_passed(
    tiny: tuple[models.ModelSpec, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert models.tier_of("u2netp-int8") is models.Tier.FAST
    assert models.MODELS["u2netp"].int8 == "u2netp-int8"
    spec, folder = tiny
    monkeypatch.setattr(models, "FAST_ORDER", ("tiny-int8", models.FAST_MODEL))
    assert models.resolve(folder, "fast") == "u2netp"  # nothing built: the float u2netp
    int8.build(spec, models.MODELS["tiny-int8"], folder, write_photos(folder / "photos"))
    assert models.resolve(folder, "fast") == "tiny-int8"
    record_path(folder / "tiny-int8.onnx").unlink()  # no record: never served
    assert models.resolve(folder, "fast") == "u2netp"


def test_u2netps_float_nodes_are_in_its_prepared_graph(tmp_path: Path) -> None:
    """The catalogue names nodes of the graph onnxruntime's pre-processing makes of the real
    u2netp file (`make setup` installs it): a renaming (another onnxruntime) fails here first."""
    spec = models.MODELS["u2netp"]
    source = models.locate(EngineSettings().models_dir, "u2netp")
    _, prepared = int8.prepare(source, tmp_path)
    graph = onnx.load(str(prepared)).graph
    assert set(spec.int8_float_nodes) <= {node.name for node in graph.node}
    convs = [node.name for node in graph.node if node.op_type == "Conv"]
    assert {"Conv_787", "Conv_920"} <= set(convs) and len(convs) > 100
