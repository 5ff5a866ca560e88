"""``stolentee bench quality``: matte quality on the evaluation set, ours and rembg's.

The evaluation set (``benchmarks/build_eval_set.py``) holds images whose ground-truth alpha is
known. Each contender runs its whole pipeline (encoded image in, PNG cutout out) on each image;
the cutout's alpha channel is scored against the truth with :mod:`stolentee.bench.metrics`.
Seconds per image time that whole call, after one warm-up call per contender.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from stolentee.bench import metrics
from stolentee.bench.contenders import (
    BenchError,
    Contender,
    check_same_model,
    rgba_of,
)
from stolentee.bench.names import CATEGORIES, DEFAULT_DATA_DIR, DEFAULT_TOLERANCE_PX, OURS, REMBG

BUILD_COMMAND = ".venv/bin/python benchmarks/build_eval_set.py --fetch"


@dataclass(frozen=True, slots=True)
class EvalImage:
    id: str
    category: str
    image: Path
    alpha: Path
    width: int
    height: int
    tags: tuple[str, ...] = ()
    source: str = ""  # package and path of the cutout it was made from
    background: str = ""
    foreground: Path | None = None  # the true foreground colours (photos), for edge colour

    def read(self) -> bytes:
        return self.image.read_bytes()

    def truth(self) -> NDArray[np.uint8]:
        with Image.open(self.alpha) as alpha:
            return np.asarray(alpha.convert("L"), dtype=np.uint8)

    def true_colours(self) -> NDArray[np.uint8] | None:
        if self.foreground is None:
            return None
        with Image.open(self.foreground) as colours:
            return np.asarray(colours.convert("RGB"), dtype=np.uint8)


def load_eval_set(
    data_dir: Path,
    *,
    categories: Sequence[str] = CATEGORIES,
    limit: int | None = None,
) -> list[EvalImage]:
    """The images of ``categories`` listed in ``data_dir/manifest.json``, ``limit`` per category."""
    manifest_path = data_dir / "manifest.json"
    if not manifest_path.exists():
        raise BenchError(
            f"no evaluation set at {data_dir} ({manifest_path.name} missing); build it with: "
            f"{BUILD_COMMAND}" + ("" if data_dir == DEFAULT_DATA_DIR else f" --out {data_dir}")
        )
    try:
        manifest = json.loads(manifest_path.read_text())
        entries: list[dict[str, Any]] = manifest["images"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BenchError(f"{manifest_path} is not a valid manifest: {exc}") from exc
    unknown = set(categories) - set(CATEGORIES)
    if unknown:
        raise BenchError(f"unknown categories {sorted(unknown)}; choose from {CATEGORIES}")
    images: list[EvalImage] = []
    taken: Counter[str] = Counter()
    for entry in entries:
        category = entry["category"]
        if category not in categories or (limit is not None and taken[category] >= limit):
            continue
        image = EvalImage(
            id=entry["id"],
            category=category,
            image=data_dir / entry["image"],
            alpha=data_dir / entry["alpha"],
            width=int(entry["width"]),
            height=int(entry["height"]),
            tags=tuple(entry.get("tags", ())),
            source=_describe(entry.get("source")),
            background=_describe(entry.get("background")),
            foreground=data_dir / entry["foreground"] if entry.get("foreground") else None,
        )
        files = (image.image, image.alpha, *([image.foreground] if image.foreground else []))
        if not all(path.exists() for path in files):
            raise BenchError(f"{image.id}: file missing; rebuild with: {BUILD_COMMAND}")
        images.append(image)
        taken[category] += 1
    if not images:
        raise BenchError(f"the evaluation set at {data_dir} has no images for {list(categories)}")
    return images


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return " ".join(
            f"{v}" if k in ("package", "path", "kind") else f"{k}={v}" for k, v in value.items()
        )
    return "" if value is None else str(value)


@dataclass(frozen=True, slots=True)
class ImageScore:
    id: str
    category: str
    contender: str
    iou: float
    mae: float
    boundary_f: float
    seconds: float
    method: str
    edge_colour: float | None = None  # metrics.edge_colour_error, where the truth has colours


@dataclass(frozen=True, slots=True)
class CategorySummary:
    category: str
    contender: str
    images: int
    iou: float
    mae: float
    boundary_f: float
    seconds_per_image: float
    methods: dict[str, int]
    edge_colour: float | None = None  # mean over the images that have true colours


@dataclass
class QualityReport:
    contenders: list[str]
    model: str
    model_md5: str
    tolerance_px: int
    summaries: list[CategorySummary] = field(default_factory=list)
    agreement_iou: dict[str, float] = field(default_factory=dict)  # category -> mean IoU
    images: list[ImageScore] = field(default_factory=list)

    def worst(self, category: str, contender: str, count: int) -> list[ImageScore]:
        """The ``count`` images of ``category`` where ``contender`` scored the lowest IoU."""
        rows = [s for s in self.images if s.category == category and s.contender == contender]
        return sorted(rows, key=lambda s: (s.iou, -s.mae))[:count]

    def summary(self, category: str, contender: str) -> CategorySummary | None:
        for item in self.summaries:
            if item.category == category and item.contender == contender:
                return item
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Progress = Callable[[int, int, str], None]


def run_quality(
    contenders: Sequence[Contender],
    images: Sequence[EvalImage],
    *,
    tolerance_px: int = DEFAULT_TOLERANCE_PX,
    progress: Progress | None = None,
) -> QualityReport:
    """Score every contender on every image; contenders alternate image by image."""
    if not contenders:
        raise BenchError("no contender to run")
    model_md5 = check_same_model(list(contenders))
    report = QualityReport(
        contenders=[c.name for c in contenders],
        model=contenders[0].model,
        model_md5=model_md5,
        tolerance_px=tolerance_px,
    )
    warm_up = images[0].read()
    for contender in contenders:
        contender.cutout(warm_up)

    agreements: dict[str, list[float]] = {}
    for number, image in enumerate(images, start=1):
        data = image.read()
        truth = image.truth()
        true_colours = image.true_colours()
        mattes: dict[str, NDArray[np.uint8]] = {}
        for contender in contenders:
            started = time.perf_counter()
            cut = contender.cutout(data)
            seconds = time.perf_counter() - started
            colours, matte = rgba_of(cut.png)
            if matte.shape != truth.shape:
                raise BenchError(
                    f"{contender.name} returned a {matte.shape[1]}x{matte.shape[0]} cutout for "
                    f"{image.id} ({truth.shape[1]}x{truth.shape[0]})"
                )
            mattes[contender.name] = matte
            scores = metrics.score(matte, truth, tolerance_px=tolerance_px)
            edge_colour = None
            if true_colours is not None:
                edge_colour = metrics.edge_colour_error(colours, matte, true_colours, truth)
            report.images.append(
                ImageScore(
                    id=image.id,
                    category=image.category,
                    contender=contender.name,
                    iou=scores.iou,
                    mae=scores.mae,
                    boundary_f=scores.boundary_f,
                    seconds=seconds,
                    method=cut.method,
                    edge_colour=edge_colour,
                )
            )
        if OURS in mattes and REMBG in mattes:
            agreements.setdefault(image.category, []).append(
                metrics.agreement_iou(mattes[OURS], mattes[REMBG])
            )
        if progress is not None:
            progress(number, len(images), image.id)

    for category in CATEGORIES:
        for contender in contenders:
            rows = [
                s for s in report.images if s.category == category and s.contender == contender.name
            ]
            if not rows:
                continue
            report.summaries.append(
                CategorySummary(
                    category=category,
                    contender=contender.name,
                    images=len(rows),
                    iou=fmean(r.iou for r in rows),
                    mae=fmean(r.mae for r in rows),
                    boundary_f=fmean(r.boundary_f for r in rows),
                    seconds_per_image=fmean(r.seconds for r in rows),
                    methods=dict(Counter(_method_family(r.method) for r in rows)),
                    edge_colour=_mean_or_none([r.edge_colour for r in rows]),
                )
            )
    report.agreement_iou = {c: fmean(values) for c, values in agreements.items()}
    return report


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return fmean(known) if known else None


def _method_family(method: str) -> str:
    """``model:u2netp`` -> ``model``; ``colour-key`` stays."""
    return method.split(":", 1)[0]
