# ruff: noqa: E501 - a study script: its tables read best unwrapped
"""Static int8 quantisation study of u2netp (/root/.u2net/u2netp.onnx, `make setup`).

`stolentee models quantize`'s recipe (stolentee.removal.precision.int8: QDQ, per-channel int8
weights, uint8 activations, Entropy ranges) with no node kept in float agrees with the float
model's masks at a mean IoU of 0.76. This script found where the damage comes from:

    make bench-data && .venv/bin/python benchmarks/quantize_u2netp.py sweep      # recipes
    .venv/bin/python benchmarks/quantize_u2netp.py weights                        # per conv
    .venv/bin/python benchmarks/quantize_u2netp.py sqnr                           # per tensor
    .venv/bin/python benchmarks/quantize_u2netp.py keep Conv_787 Concat_786       # a build

Stages:

    sweep     calibration methods x activation types x which operators are quantised; each
              build's agreement with the float model (the engine's input, 320 px; masks at the
              photo's size, at 0.5, as `models quantize` checks) on the evaluation share of the
              development set's photos, and its inference time
    weights   one convolution at a time, only its weights rounded to int8 (per channel, in the
              float graph): the agreement on 8 evaluation photos; the most sensitive first
    sqnr      one build's per-tensor signal-to-quantisation-noise ratio (onnxruntime's
              qdq_loss_debug) on 4 calibration photos; the error carried from the input
              (xmodel) is the one to read: a tensor's own figure (qdq) is meaningless after a
              Relu the quantiser folded into its QuantizeLinear
    keep      the recipe with the named nodes kept in float (nodes_to_exclude)

Work files: $TMPDIR/stolentee-quant-u2netp. Nothing in the repository is written. Figures:
benchmarks/removal.md, "int8 u2netp". What it found is the catalogue's
U2NETP_INT8_FLOAT_NODES (stolentee.removal.models).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from PIL import Image, ImageOps

from stolentee.removal import tensors
from stolentee.removal.models import get_spec
from stolentee.removal.precision import int8
from stolentee.removal.precision.upcast import to_float32

ROOT = Path(tempfile.gettempdir()) / "stolentee-quant-u2netp"
SRC = Path.home() / ".u2net" / "u2netp.onnx"
PHOTOS = Path(__file__).parent / "data" / "photo"
PRE = ROOT / "u2netp-fp32-pre.onnx"
SPEC = get_spec("u2netp")
NORMALISER = tensors.Normaliser(SPEC)


def prepare() -> None:
    """The float32, opset-13 file that `models quantize` hands to quantize_static."""
    if PRE.exists():
        return
    ROOT.mkdir(parents=True, exist_ok=True)
    plain = ROOT / "u2netp-fp32.onnx"
    onnx.save(int8._at_least_opset(to_float32(onnx.load(str(SRC)))), str(plain))
    quant_pre_process(str(plain), str(PRE), skip_symbolic_shape=True)


def _batch(path: Path) -> tuple[np.ndarray, tuple[int, int]]:
    with Image.open(path) as opened:
        rgb = np.asarray(ImageOps.exif_transpose(opened).convert("RGB"))
    return NORMALISER.batch(tensors.model_input(rgb, SPEC.input_size)), (rgb.shape[1], rgb.shape[0])


class Reader(CalibrationDataReader):  # type: ignore[misc]
    def __init__(self, photos: Sequence[Path], name: str) -> None:
        self.items = [{name: _batch(p)[0]} for p in photos]
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.items):
            return None
        self.position += 1
        return self.items[self.position - 1]

    def rewind(self) -> None:
        self.position = 0


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _first(session: ort.InferenceSession, batch: np.ndarray) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    out = session.run([session.get_outputs()[0].name], {session.get_inputs()[0].name: batch})[0]
    return out[0, 0], time.perf_counter() - started


class Evaluation:
    """The float model's mattes on the evaluation share, computed once."""

    def __init__(self) -> None:
        self.calibration, evaluation = int8.split(int8.find_photos(PHOTOS))
        self.items = [(p.name, *_batch(p)) for p in evaluation]
        reference = _session(PRE)
        self.float_seconds = []
        self.reference = []
        for _, batch, size in self.items:
            raw, seconds = _first(reference, batch)
            self.float_seconds.append(seconds)
            self.reference.append(int8._mask(NORMALISER.matte(raw), size))

    def score(self, model: Path) -> dict[str, Any]:
        session = _session(model)
        scores, seconds = [], []
        for (name, batch, size), reference in zip(self.items, self.reference, strict=True):
            raw, took = _first(session, batch)
            seconds.append(took)
            scores.append((int8.mask_iou(reference, int8._mask(NORMALISER.matte(raw), size)), name))
        lowest, worst = min(scores)
        return {
            "mean_iou": round(statistics.fmean(s for s, _ in scores), 4),
            "lowest_iou": round(lowest, 4),
            "worst": worst,
            "int8_ms": round(statistics.median(seconds) * 1000, 1),
            "float_ms": round(statistics.median(self.float_seconds) * 1000, 1),
        }


def build(name: str, calibration: Sequence[Path], **options: Any) -> Path:
    out = ROOT / f"{name}.onnx"
    if options.pop("dynamic", False):  # no calibration: each input's range at run time
        from onnxruntime.quantization import quantize_dynamic

        quantize_dynamic(str(PRE), str(out), weight_type=QuantType.QInt8, **options)
        return out
    settings: dict[str, Any] = {
        "quant_format": QuantFormat.QDQ,
        "per_channel": True,
        "activation_type": QuantType.QUInt8,
        "weight_type": QuantType.QInt8,
        "calibrate_method": CalibrationMethod.Entropy,
    }
    settings.update(options)
    name_in = onnx.load(str(PRE)).graph.input[0].name
    quantize_static(str(PRE), str(out), Reader(calibration, name_in), **settings)
    return out


RECIPES: dict[str, dict[str, Any]] = {
    "entropy-all": {},
    "minmax-all": {"calibrate_method": CalibrationMethod.MinMax},
    "percentile-all": {
        "calibrate_method": CalibrationMethod.Percentile,
        "extra_options": {"CalibPercentile": 99.999},
    },
    "entropy-conv": {"op_types_to_quantize": ["Conv"]},
    "minmax-conv": {"calibrate_method": CalibrationMethod.MinMax, "op_types_to_quantize": ["Conv"]},
    "percentile-conv": {
        "calibrate_method": CalibrationMethod.Percentile,
        "op_types_to_quantize": ["Conv"],
        "extra_options": {"CalibPercentile": 99.999},
    },
    "minmax-conv-s8": {
        "calibrate_method": CalibrationMethod.MinMax,
        "op_types_to_quantize": ["Conv"],
        "activation_type": QuantType.QInt8,
        "extra_options": {"ActivationSymmetric": True},
    },
    "dynamic-conv": {"dynamic": True, "op_types_to_quantize": ["Conv"], "per_channel": True},
    "minmax-conv-tensor": {
        "calibrate_method": CalibrationMethod.MinMax,
        "op_types_to_quantize": ["Conv"],
        "per_channel": False,
    },
}


def sweep(names: Sequence[str]) -> None:
    prepare()
    evaluation = Evaluation()
    results = {}
    for name in names or RECIPES:
        model = build(name, evaluation.calibration, **RECIPES[name])
        results[name] = evaluation.score(model)
        print(
            f"| {name} | {results[name]['mean_iou']} | {results[name]['lowest_iou']} ({results[name]['worst']}) | {results[name]['int8_ms']} / {results[name]['float_ms']} ms |",
            flush=True,
        )
    (ROOT / "sweep.json").write_text(json.dumps(results, indent=1))


def _producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {output: node for node in model.graph.node for output in node.output}


def sqnr(recipe: str, photos: int = 4) -> list[tuple[str, float, float]]:
    """Per tensor: (name, own qdq SQNR, cross-model SQNR), worst own SQNR first."""
    from onnxruntime.quantization import qdq_loss_debug as debug

    prepare()
    evaluation = Evaluation()
    model = build(recipe, evaluation.calibration, **RECIPES[recipe])
    name_in = onnx.load(str(PRE)).graph.input[0].name
    chosen = evaluation.calibration[:photos]
    float_aug, qdq_aug = ROOT / "float-aug.onnx", ROOT / "qdq-aug.onnx"
    debug.modify_model_output_intermediate_tensors(
        str(PRE), str(float_aug), save_as_external_data=False
    )
    debug.modify_model_output_intermediate_tensors(
        str(model), str(qdq_aug), save_as_external_data=False
    )
    float_acts = debug.collect_activations(str(float_aug), Reader(chosen, name_in))
    qdq_acts = debug.collect_activations(str(qdq_aug), Reader(chosen, name_in))
    matched = debug.create_activation_matching(qdq_acts, float_acts)
    errors = debug.compute_activation_error(matched)
    rows = sorted(
        (
            (name, float(e.get("qdq_err", float("nan"))), float(e.get("xmodel_err", float("nan"))))
            for name, e in errors.items()
        ),
        key=lambda row: row[1],
    )
    (ROOT / f"sqnr-{recipe}.json").write_text(json.dumps(rows, indent=1))
    producers = _producers(onnx.load(str(PRE)))
    for name, own, carried in rows[:40]:
        node = producers.get(name)
        print(f"| {name} | {node.op_type if node else '?'} | {own:.1f} | {carried:.1f} |")
    return rows


def weights(photos: int = 8) -> None:
    """Each convolution's weights alone rounded to int8 (symmetric, per output channel)."""
    from onnx import numpy_helper

    prepare()
    evaluation = Evaluation()
    items, references = evaluation.items[:photos], evaluation.reference[:photos]
    base = onnx.load(str(PRE))
    arrays = {init.name: numpy_helper.to_array(init) for init in base.graph.initializer}
    results = []
    for conv in (node for node in base.graph.node if node.op_type == "Conv"):
        weight = arrays[conv.input[1]]
        peak = np.abs(weight).max(axis=tuple(range(1, weight.ndim)), keepdims=True)
        scale = np.maximum(peak, 1e-12) / 127
        rounded = (np.round(weight / scale) * scale).astype(np.float32)
        model = onnx.ModelProto()
        model.CopyFrom(base)
        for init in model.graph.initializer:
            if init.name == conv.input[1]:
                init.CopyFrom(numpy_helper.from_array(rounded, init.name))
        session = ort.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        scores = [
            int8.mask_iou(reference, int8._mask(NORMALISER.matte(_first(session, batch)[0]), size))
            for (_, batch, size), reference in zip(items, references, strict=True)
        ]
        results.append((statistics.fmean(scores), conv.name, list(weight.shape)))
    results.sort()
    (ROOT / "weights.json").write_text(json.dumps(results, indent=1))
    for score, name, shape in results[:10]:
        print(f"| {name} | {shape} | {score:.4f} |")


def keep(nodes: Sequence[str], recipe: str = "entropy-all") -> None:
    """The recipe's build with ``nodes`` kept in float."""
    prepare()
    evaluation = Evaluation()
    options = {**RECIPES[recipe], "nodes_to_exclude": list(nodes)}
    result = evaluation.score(build(f"{recipe}-keep", evaluation.calibration, **options))
    print(
        f"| {', '.join(nodes)} | {result['mean_iou']} | {result['lowest_iou']} ({result['worst']}) | {result['int8_ms']} / {result['float_ms']} ms |"
    )


if __name__ == "__main__":
    stage, *rest = sys.argv[1:] or ["sweep"]
    if stage == "sweep":
        sweep(rest)
    elif stage == "weights":
        weights()
    elif stage == "sqnr":
        sqnr(rest[0] if rest else "entropy-all")
    elif stage == "keep":
        keep(rest)
    else:
        raise SystemExit(f"unknown stage {stage!r}: sweep, weights, sqnr or keep")
