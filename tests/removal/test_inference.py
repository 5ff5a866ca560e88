"""The runtimes behind a model session: onnxruntime and OpenVINO on the real u2netp file, the
bfloat16 setting (only for models whose spec allows it, only on OpenVINO), and the errors."""

from __future__ import annotations

import sys
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


def _batch(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((1, 3, 320, 320), dtype=np.float32)


def test_openvino_runs_u2netp_as_onnxruntime_does(engine_settings: EngineSettings) -> None:
    path = _u2netp(engine_settings)
    ort_run = inference.open_inference(path, settings=engine_settings, bfloat16_safe=False)
    openvino = engine_settings.model_copy(update={"runtime": "openvino"})
    ov_run = inference.open_inference(path, settings=openvino, bfloat16_safe=False)
    assert ov_run.providers == ["OpenVINO CPU (f32)"]
    batch = _batch(1)
    expected, got = ort_run.run(batch), ov_run.run(batch)
    assert got.shape == expected.shape == (1, 1, 320, 320)
    assert np.abs(got - expected).max() < 1e-3


def test_openvino_from_many_threads_gives_each_caller_its_own_output(
    engine_settings: EngineSettings,
) -> None:
    openvino = engine_settings.model_copy(update={"runtime": "openvino"})
    run = inference.open_inference(_u2netp(openvino), settings=openvino, bfloat16_safe=False)
    batches = [_batch(seed) for seed in range(6)]
    alone = [run.run(batch) for batch in batches]
    with ThreadPoolExecutor(max_workers=3) as pool:
        together = list(pool.map(run.run, batches))
    for expected, got in zip(alone, together, strict=True):
        assert np.array_equal(expected, got)
    assert not np.array_equal(alone[0], alone[1])


@pytest.mark.parametrize("safe", [True, False])
def test_bfloat16_only_where_the_spec_allows_and_the_cpu_has_it(
    engine_settings: EngineSettings, safe: bool
) -> None:
    settings = engine_settings.model_copy(update={"runtime": "openvino", "precision": "bfloat16"})
    run = inference.open_inference(_u2netp(settings), settings=settings, bfloat16_safe=safe)
    expected = "bf16" if safe and _cpu_has_bfloat16() else "f32"
    assert run.providers == [f"OpenVINO CPU ({expected})"]


def test_the_engine_keeps_u2netp_in_float32_when_bfloat16_is_asked_for(
    engine_settings: EngineSettings,
) -> None:
    """u2netp's spec does not allow bfloat16 (its matte suffers): the same matte as onnxruntime
    gives, within a level or two of rounding."""
    settings = engine_settings.model_copy(update={"runtime": "openvino", "precision": "bfloat16"})
    engine = RemovalEngine(settings=settings)
    reference = RemovalEngine(settings=engine_settings)
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
    with pytest.raises(ValidationError, match="needs STOLENTEE_ENGINE_RUNTIME=openvino"):
        EngineSettings(precision="bfloat16")


def test_openvino_runs_on_the_cpu_only() -> None:
    with pytest.raises(ValidationError, match="models run on the CPU"):
        EngineSettings(runtime="openvino", providers="cuda")


def test_a_missing_openvino_names_the_extra(
    engine_settings: EngineSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    openvino = engine_settings.model_copy(update={"runtime": "openvino"})
    with pytest.raises(inference.RuntimeMissingError, match=r"stolentee\[openvino\]"):
        inference.open_inference(_u2netp(openvino), settings=openvino, bfloat16_safe=False)
    with pytest.raises(inference.RuntimeMissingError, match=r"stolentee\[openvino\]"):
        RemovalEngine(settings=openvino)  # at start-up, not at the first request
