"""The runtimes behind a model session: onnxruntime and OpenVINO on the real u2netp file, the
choice between them (``auto``: OpenVINO for the models computed in bfloat16), the bfloat16
setting (only for models whose spec allows it, only on OpenVINO), OpenVINO's compile cache, and
the errors."""

from __future__ import annotations

import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from stolentee.config import EngineSettings
from stolentee.removal import inference, models
from stolentee.removal.engine import RemovalEngine

from .conftest import photo_bytes


def _cpu_has_bfloat16() -> bool:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def _u2netp(settings: EngineSettings) -> str:
    return str(models.locate(settings.models_dir, "u2netp"))


def _open(
    settings: EngineSettings,
    *,
    safe: bool = False,
    load: Callable[[], str | bytes] | None = None,
    fingerprint: str | None = None,
) -> inference.Inference:
    """u2netp on the runtime ``settings`` choose, as if its spec's ``bfloat16`` were ``safe``."""
    return inference.open_inference(
        load or (lambda: _u2netp(settings)),
        name="u2netp",
        fingerprint=models.MODELS["u2netp"].md5 if fingerprint is None else fingerprint,
        settings=settings,
        bfloat16_safe=safe,
    )


@pytest.fixture
def openvino_settings(engine_settings: EngineSettings, tmp_path: Path) -> EngineSettings:
    """OpenVINO for every model, its compile cache in a fresh folder."""
    return engine_settings.model_copy(
        update={"runtime": "openvino", "compile_cache_dir": tmp_path / "compiled"}
    )


def _batch(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((1, 3, 320, 320), dtype=np.float32)


def test_openvino_runs_u2netp_as_onnxruntime_does(
    engine_settings: EngineSettings, openvino_settings: EngineSettings
) -> None:
    ort_run = _open(engine_settings)
    assert ort_run.providers == ["CPUExecutionProvider"]  # auto: u2netp stays in float32
    ov_run = _open(openvino_settings)
    assert ov_run.providers == ["OpenVINO CPU (f32)"]
    batch = _batch(1)
    expected, got = ort_run.run(batch), ov_run.run(batch)
    assert got.shape == expected.shape == (1, 1, 320, 320)
    assert np.abs(got - expected).max() < 1e-3


def test_openvino_from_many_threads_gives_each_caller_its_own_output(
    openvino_settings: EngineSettings,
) -> None:
    run = _open(openvino_settings)
    batches = [_batch(seed) for seed in range(6)]
    alone = [run.run(batch) for batch in batches]
    with ThreadPoolExecutor(max_workers=3) as pool:
        together = list(pool.map(run.run, batches))
    for expected, got in zip(alone, together, strict=True):
        assert np.array_equal(expected, got)
    assert not np.array_equal(alone[0], alone[1])


@pytest.mark.parametrize("precision", ["auto", "bfloat16"])
@pytest.mark.parametrize("safe", [True, False])
def test_bfloat16_only_where_the_spec_allows_and_the_cpu_has_it(
    openvino_settings: EngineSettings, safe: bool, precision: str
) -> None:
    settings = openvino_settings.model_copy(update={"precision": precision})
    expected = "bf16" if safe and _cpu_has_bfloat16() else "f32"
    assert _open(settings, safe=safe).providers == [f"OpenVINO CPU ({expected})"]
    assert inference.bfloat16_available(settings) is _cpu_has_bfloat16()


@pytest.mark.parametrize("safe", [True, False])
def test_auto_puts_the_bfloat16_models_on_openvino_and_the_rest_on_onnxruntime(
    engine_settings: EngineSettings, tmp_path: Path, safe: bool
) -> None:
    settings = engine_settings.model_copy(update={"compile_cache_dir": tmp_path})
    assert settings.runtime == "auto" and settings.precision == "auto"  # the defaults
    expected = "OpenVINO CPU (bf16)" if safe and _cpu_has_bfloat16() else "CPUExecutionProvider"
    assert _open(settings, safe=safe).providers == [expected]
    # Pinned to float32, or to onnxruntime, or asked for a GPU: onnxruntime runs it.
    for pinned in ({"precision": "float32"}, {"runtime": "onnxruntime"}, {"providers": "cuda"}):
        run = _open(settings.model_copy(update=pinned), safe=safe)
        assert run.providers[-1] == "CPUExecutionProvider"  # (CUDA first where onnxruntime has it)
        assert not inference.bfloat16_available(settings.model_copy(update=pinned))


def test_the_compile_cache_serves_later_loads_without_the_model(
    openvino_settings: EngineSettings,
) -> None:
    """The first load compiles and keeps the compiled model; the next imports it: the loader
    (which upcasts IS-Net's fp16 weights) is not called, and the outputs are the same."""
    first = _open(openvino_settings)
    assert first.providers == ["OpenVINO CPU (f32)"]
    cache = openvino_settings.compile_cache_dir
    assert cache is not None
    [blob] = list(cache.iterdir())
    assert blob.name.startswith("u2netp-") and blob.stat().st_size > 1_000_000

    def no_load() -> str:
        raise AssertionError("the cached model should not be loaded again")

    again = _open(openvino_settings, load=no_load)
    assert again.providers == ["OpenVINO CPU (f32, cached)"]
    batch = _batch(3)
    assert np.array_equal(first.run(batch), again.run(batch))


def test_the_compile_cache_is_keyed_by_the_file_and_the_settings(
    openvino_settings: EngineSettings,
) -> None:
    """Another file (checksum) or other settings compile afresh, and the model's older blob is
    removed; another model's blob is left alone."""
    cache = openvino_settings.compile_cache_dir
    assert cache is not None
    _open(openvino_settings)
    [first] = list(cache.iterdir())
    cache.joinpath("u2netp-int8-0123456789abcdef0123.ovblob").write_bytes(b"another model")
    loads: list[int] = []

    def counted() -> str:
        loads.append(1)
        return _u2netp(openvino_settings)

    assert "cached" not in _open(openvino_settings, load=counted, fingerprint="0" * 32).providers[0]
    assert (
        "cached"
        not in _open(openvino_settings.model_copy(update={"threads": 1}), load=counted).providers[0]
    )
    assert len(loads) == 2
    names = sorted(path.name for path in cache.iterdir())
    assert first.name not in names and len(names) == 2
    assert "u2netp-int8-0123456789abcdef0123.ovblob" in names


def test_a_damaged_compile_cache_is_compiled_afresh(
    openvino_settings: EngineSettings, caplog: pytest.LogCaptureFixture
) -> None:
    cache = openvino_settings.compile_cache_dir
    assert cache is not None
    expected = _open(openvino_settings).run(_batch(4))
    [blob] = list(cache.iterdir())
    size = blob.stat().st_size
    blob.write_bytes(blob.read_bytes()[: size // 2])  # a copy cut short
    run = _open(openvino_settings)
    assert run.providers == ["OpenVINO CPU (f32)"]  # compiled, not imported
    assert "damaged" in caplog.text
    assert blob.stat().st_size == size  # written again, whole
    assert np.array_equal(run.run(_batch(4)), expected)
    assert _open(openvino_settings).providers == ["OpenVINO CPU (f32, cached)"]


def test_a_compile_cache_that_cannot_be_written_only_warns(
    openvino_settings: EngineSettings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    settings = openvino_settings.model_copy(update={"compile_cache_dir": blocked / "compiled"})
    run = _open(settings)
    assert run.providers == ["OpenVINO CPU (f32)"]
    assert run.run(_batch(5)).shape == (1, 1, 320, 320)
    assert "could not keep the compiled u2netp" in caplog.text
    off = openvino_settings.model_copy(update={"compile_cache": False})
    _open(off)
    assert off.compile_cache_dir is not None and not off.compile_cache_dir.exists()


def test_the_compile_cache_lives_in_the_models_folder_by_default(
    engine_settings: EngineSettings,
) -> None:
    assert engine_settings.compile_cache_dir is None
    assert inference.compile_cache_dir(engine_settings) == (
        engine_settings.models_dir / "openvino-cache"
    )
    off = engine_settings.model_copy(update={"compile_cache": False})
    assert inference.compile_cache_dir(off) is None


def test_the_engine_keeps_u2netp_in_float32_when_bfloat16_is_asked_for(
    engine_settings: EngineSettings,
) -> None:
    """u2netp's spec does not allow bfloat16 (its matte suffers): the same matte as onnxruntime
    gives, within a level or two of rounding. (The model's matte, upscaled: the edge refinement
    would amplify a rounding difference where the guide is flat.)"""
    plain = engine_settings.model_copy(update={"refine_edges": False})
    settings = plain.model_copy(
        update={"runtime": "openvino", "precision": "bfloat16", "compile_cache": False}
    )
    engine = RemovalEngine(settings=settings)
    reference = RemovalEngine(settings=plain)
    try:
        assert not models.get_spec("u2netp").bfloat16
        assert engine.session("u2netp").providers == ["OpenVINO CPU (f32)"]
        data = photo_bytes("astronaut.png")
        got, _ = engine.matte(data)
        expected, _ = reference.matte(data)
        assert np.abs(got.astype(int) - expected).max() <= 2
    finally:
        engine.close()
        reference.close()


def test_bfloat16_needs_openvino() -> None:
    with pytest.raises(ValidationError, match="bfloat16 needs OpenVINO"):
        EngineSettings(runtime="onnxruntime", precision="bfloat16")
    assert EngineSettings(runtime="onnxruntime").precision == "auto"  # auto: float32 there


def test_openvino_runs_on_the_cpu_only() -> None:
    with pytest.raises(ValidationError, match="models run on the CPU"):
        EngineSettings(runtime="openvino", providers="cuda")
    with pytest.raises(ValidationError, match="bfloat16 is computed by OpenVINO on the CPU"):
        EngineSettings(precision="bfloat16", providers="cuda")


def test_a_missing_openvino_names_the_extra(
    engine_settings: EngineSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    openvino = engine_settings.model_copy(update={"runtime": "openvino"})
    with pytest.raises(inference.RuntimeMissingError, match=r"stolentee\[openvino\]"):
        _open(openvino)
    for named in (openvino, engine_settings.model_copy(update={"precision": "bfloat16"})):
        with pytest.raises(inference.RuntimeMissingError, match=r"stolentee\[openvino\]"):
            RemovalEngine(settings=named)  # at start-up, not at the first request
    # auto: without OpenVINO every model runs on onnxruntime, and says why.
    assert _open(engine_settings, safe=True).providers == ["CPUExecutionProvider"]
    assert "stolentee[openvino]" in (inference.why_not_bfloat16(engine_settings) or "")
