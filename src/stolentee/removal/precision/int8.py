"""Static int8 quantisation of a float model, served only where it agrees with the float model.

``build`` turns the float model into float32 (:mod:`.upcast`), lets onnxruntime pre-process it
(shape inference, basic graph optimisation), and quantises it statically: QDQ format, per-channel
int8 weights, uint8 activations whose ranges come from Entropy calibration on photos, and the
nodes the model's spec names (``int8_float_nodes``, found by per-block sensitivity) kept in
float. The photos are split, seeded and disjoint, into a calibration share and an evaluation
share. On the evaluation photos the int8 model's masks (matte upscaled to the photo, at 0.5) are
compared with the float model's by IoU; the file is moved into place, with its build record
beside it, only when the mean and the lowest IoU both reach the floor (the lowest may have a
floor of its own: u2netp's soft mattes flip pixels near 0.5 on a few photos). Figures:
benchmarks/removal.md, "int8 IS-Net" and "int8 u2netp".
"""

from __future__ import annotations

import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
from numpy.typing import NDArray
from PIL import Image, ImageOps

from stolentee.errors import StolenteeError
from stolentee.removal import tensors
from stolentee.removal.model_record import BuildRecord, write_record
from stolentee.removal.models import ModelSpec, file_md5, model_path
from stolentee.removal.precision.upcast import to_float32

log = logging.getLogger(__name__)

DEFAULT_FLOOR = 0.99
SEED = 20240601
CALIBRATION_SHARE = 0.4  # 16 of the development set's 40 photos
MIN_PHOTOS = 8
STRIDE = 2  # calibration photos run per pass: bounds the intermediates held at once
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")

Reporter = Callable[[str], None]


class QuantizeError(StolenteeError):
    code = "quantize_failed"
    title = "Quantisation failed"


@dataclass(frozen=True, slots=True)
class Agreement:
    mean: float
    lowest: float
    worst: str  # the photo with the lowest IoU
    images: int

    def reaches(self, floor: float, lowest_floor: float | None = None) -> bool:
        lowest = floor if lowest_floor is None else lowest_floor
        return self.mean >= floor and self.lowest >= lowest


def find_photos(folder: Path) -> list[Path]:
    """The photos directly in ``folder`` (by suffix; masks and cut-outs named ``*.alpha.*`` or
    ``*.fg.*`` beside them, as in the development set, are skipped)."""
    if not folder.is_dir():
        raise QuantizeError(f"{folder} is not a folder of photos")
    return sorted(
        path
        for path in folder.iterdir()
        if path.suffix.lower() in PHOTO_SUFFIXES
        and path.is_file()
        and not any(part in (".alpha", ".fg") for part in path.suffixes)
    )


def split(photos: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """Seeded, disjoint calibration and evaluation shares; the calibration share is a multiple
    of :data:`STRIDE`."""
    if len(photos) < MIN_PHOTOS:
        raise QuantizeError(
            f"{len(photos)} photos given; at least {MIN_PHOTOS} are needed (calibration and "
            "evaluation); the development set (`make bench-data`) has 40"
        )
    order = np.random.default_rng(SEED).permutation(len(photos))
    count = max(STRIDE, int(len(photos) * CALIBRATION_SHARE) // STRIDE * STRIDE)
    calibration = sorted(photos[i] for i in order[:count])
    evaluation = sorted(photos[i] for i in order[count:])
    return calibration, evaluation


def build(
    spec: ModelSpec,
    target: ModelSpec,
    models_dir: Path,
    photos: Sequence[Path],
    *,
    floor: float = DEFAULT_FLOOR,
    lowest_floor: float | None = None,
    threads: int = 0,
    report: Reporter = log.info,
) -> BuildRecord:
    """Build ``target`` (the int8 model) from the installed float ``spec``; returns its record.
    Raises :class:`QuantizeError` (nothing written) when the mean agreement is below ``floor``
    or the lowest photo's below ``lowest_floor`` (``floor`` when None)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    source = model_path(models_dir, spec)
    calibration, evaluation = split(photos)
    normaliser = tensors.Normaliser(spec)
    report(f"{spec.name}: {len(calibration)} calibration and {len(evaluation)} evaluation photos")
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=".quantize-") as work:
        float_file, prepared = prepare(source, Path(work))
        built = Path(work) / target.filename
        graph = onnx.load(str(prepared)).graph
        excluded = _float_nodes(graph, spec)
        report(f"{spec.name}: calibrating (Entropy) with {len(excluded)} node(s) kept in float")
        reader = _Reader(calibration, spec, normaliser, graph.input[0].name, report)
        del graph
        quantize_static(
            str(prepared),
            str(built),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=False,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
            calibrate_method=CalibrationMethod.Entropy,
            extra_options={"CalibStridedMinMax": STRIDE},
        )
        report(f"{target.name}: checking agreement with {spec.name} on {len(evaluation)} photos")
        float_session = _session(float_file, threads)
        int8_session = _session(built, threads)
        agreement, float_seconds, int8_seconds = _compare(
            float_session, int8_session, evaluation, spec, normaliser, report
        )
        record = BuildRecord(
            model=target.name,
            source=spec.name,
            source_md5=file_md5(source),
            md5=file_md5(built),
            passed=agreement.reaches(floor, lowest_floor),
            floor=floor,
            lowest_floor=lowest_floor,
            agreement_mean=round(agreement.mean, 5),
            agreement_min=round(agreement.lowest, 5),
            calibration_images=len(calibration),
            evaluation_images=len(evaluation),
            float_seconds=round(float_seconds, 4),
            int8_seconds=round(int8_seconds, 4),
            onnxruntime=ort.__version__,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        report(
            f"{target.name}: agreement with {spec.name}: mean IoU {agreement.mean:.4f}, lowest "
            f"{agreement.lowest:.4f} ({agreement.worst}); floor {floor} (lowest "
            f"{record.photo_floor}); inference "
            f"{int8_seconds:.3f} s vs {float_seconds:.3f} s float"
        )
        if not record.passed:
            raise QuantizeError(
                f"{target.name} does not reach the agreement floor {floor} (lowest "
                f"{record.photo_floor}): mean IoU {agreement.mean:.4f}, lowest "
                f"{agreement.lowest:.4f} on {agreement.worst}; nothing was installed"
            )
        destination = model_path(models_dir, target)
        os.replace(built, destination)
        write_record(destination, record)  # last: without it the file is not served
    report(f"{target.name}: installed at {destination}")
    return record


def prepare(source: Path, work: Path) -> tuple[Path, Path]:
    """``source`` in float32 at opset >= 13 (``float32.onnx``, the reference the int8 model is
    checked against), and that file pre-processed by onnxruntime (``prepared.onnx``: shape
    inference, basic graph optimisation), whose node names ``int8_float_nodes`` use."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    float_file, prepared = work / "float32.onnx", work / "prepared.onnx"
    onnx.save(_at_least_opset(to_float32(onnx.load(str(source)))), str(float_file))
    quant_pre_process(str(float_file), str(prepared), skip_symbolic_shape=True)
    return float_file, prepared


# Per-channel QuantizeLinear/DequantizeLinear (their ``axis``) need opset 13; u2netp's file is
# opset 11.
_QDQ_OPSET = 13


def _at_least_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset >= _QDQ_OPSET:
        return model
    from onnx import version_converter

    converted: onnx.ModelProto = version_converter.convert_version(model, _QDQ_OPSET)
    return converted


def _float_nodes(graph: onnx.GraphProto, spec: ModelSpec) -> list[str]:
    names = {node.name for node in graph.node}
    missing = [name for name in spec.int8_float_nodes if name not in names]
    if missing:
        raise QuantizeError(
            f"{spec.name}: the graph has no node {', '.join(missing)} to keep in float; "
            "is this the model file the catalogue describes?"
        )
    return list(spec.int8_float_nodes)


def _photo_batch(
    path: Path, spec: ModelSpec, normaliser: tensors.Normaliser
) -> tuple[NDArray[np.float32], tuple[int, int]]:
    """The model's input batch for the photo at ``path`` and the photo's (width, height)."""
    try:
        with Image.open(path) as opened:
            rgb = np.asarray(ImageOps.exif_transpose(opened).convert("RGB"))
    except (OSError, ValueError) as error:
        raise QuantizeError(f"cannot read the photo {path}: {error}") from error
    small = tensors.model_input(rgb, spec.input_size)
    return normaliser.batch(small), (rgb.shape[1], rgb.shape[0])


class _Reader:
    """onnxruntime's calibration data reader over photos (with the strided ranges it sets)."""

    def __init__(
        self,
        photos: Sequence[Path],
        spec: ModelSpec,
        normaliser: tensors.Normaliser,
        input_name: str,
        report: Reporter,
    ) -> None:
        self._photos = list(photos)
        self._spec = spec
        self._normaliser = normaliser
        self._report = report
        self._input = input_name
        self._position = 0
        self._end = len(self._photos)

    def __len__(self) -> int:
        return len(self._photos)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._position, self._end = start_index, min(end_index, len(self._photos))

    def get_next(self) -> dict[str, NDArray[np.float32]] | None:
        if self._position >= self._end:
            return None
        path = self._photos[self._position]
        self._position += 1
        self._report(f"  calibrating {self._position}/{len(self._photos)}: {path.name}")
        batch, _ = _photo_batch(path, self._spec, self._normaliser)
        return {self._input: batch}


def _session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _run(
    session: ort.InferenceSession, batch: NDArray[np.float32]
) -> tuple[NDArray[np.float32], float]:
    started = time.perf_counter()
    raw = session.run([session.get_outputs()[0].name], {session.get_inputs()[0].name: batch})[0]
    return raw[0, 0], time.perf_counter() - started


def _compare(
    float_session: ort.InferenceSession,
    int8_session: ort.InferenceSession,
    photos: Sequence[Path],
    spec: ModelSpec,
    normaliser: tensors.Normaliser,
    report: Reporter,
) -> tuple[Agreement, float, float]:
    """IoU of the two models' masks on every photo, and median seconds per inference of each."""
    scores: list[tuple[float, str]] = []
    float_times: list[float] = []
    int8_times: list[float] = []
    for index, (path, batch, size) in enumerate(_batches(photos, spec, normaliser), 1):
        reference, seconds = _run(float_session, batch)
        float_times.append(seconds)
        candidate, seconds = _run(int8_session, batch)
        int8_times.append(seconds)
        score = mask_iou(
            _mask(normaliser.matte(reference), size), _mask(normaliser.matte(candidate), size)
        )
        scores.append((score, path.name))
        report(f"  {index}/{len(photos)} {path.name}: IoU {score:.4f}")
    values = [score for score, _ in scores]
    lowest, worst = min(scores)
    agreement = Agreement(statistics.fmean(values), lowest, worst, len(scores))
    return agreement, statistics.median(float_times), statistics.median(int8_times)


def _batches(
    photos: Sequence[Path], spec: ModelSpec, normaliser: tensors.Normaliser
) -> Iterator[tuple[Path, NDArray[np.float32], tuple[int, int]]]:
    for path in photos:
        batch, size = _photo_batch(path, spec, normaliser)
        yield path, batch, size


def _mask(matte: NDArray[np.uint8], size: tuple[int, int]) -> NDArray[np.bool_]:
    """The matte at the photo's size (bicubic, as the engine upscales it), thresholded at 0.5."""
    return np.asarray(cv2.resize(matte, size, interpolation=cv2.INTER_CUBIC) > 127)


def mask_iou(first: NDArray[np.bool_], second: NDArray[np.bool_]) -> float:
    union = int(np.logical_or(first, second).sum())
    return 1.0 if union == 0 else int(np.logical_and(first, second).sum()) / union
