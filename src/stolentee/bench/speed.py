"""``stolentee bench removal`` and ``stolentee bench memory``: speed and memory against rembg.

Speed: both contenders run in one process on the same encoded images (photos as JPEG, graphics as
PNG, at 1, 4 and 12 megapixels by default), interleaved image by image (the order flips every
call so neither always runs on a warm cache), the whole pipeline from encoded bytes to encoded
PNG. Each contender is warmed up first; set-up (imports, model load) is reported apart.

Memory: peak RSS is measured per contender in its own ``spawn`` child process (both in one
process would share one peak): the child builds only that contender, runs it over the same
images, and reports its high-water RSS (``VmHWM``, see :func:`_peak_rss_mib`). The memory run
processes N images in sequence like ``stolentee remove`` (read file, remove, write PNG) and
records the RSS at checkpoints, to show whether it grows between image 100 and image N. At each
checkpoint it also records the *retained* RSS: the RSS once the C heap's free pages are handed
back (``malloc_trim(0)``, in either contender's child alike). Our engine keeps up to a model's
worth of free heap between images on purpose (``removal.engine.KEEP_FREE_HEAP_BYTES``), so its
plain RSS after image N depends on the images just before; the retained RSS is what a leak or
lasting fragmentation would make grow.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from PIL import Image

from stolentee.bench.contenders import Contender, check_same_model, make_contender
from stolentee.bench.names import DEFAULT_SIZES_MP
from stolentee.bench.quality import EvalImage, load_eval_set
from stolentee.config import EngineSettings
from stolentee.removal.memory import release_free_memory

PHOTO = "photo"
GRAPHIC = "graphic"
KINDS = (PHOTO, GRAPHIC)
JPEG_QUALITY = 90
WARM_UP_CALLS = 2


@dataclass(frozen=True, slots=True)
class SpeedImage:
    kind: str  # "photo" or "graphic"
    megapixels: float  # the size asked for
    path: Path
    width: int
    height: int
    source: str  # evaluation-set id it was made from

    @property
    def group(self) -> tuple[str, float]:
        return (self.kind, self.megapixels)


def _resize_to(image: Image.Image, megapixels: float) -> Image.Image:
    scale = (megapixels * 1_000_000 / (image.width * image.height)) ** 0.5
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    resample = Image.Resampling.BICUBIC if scale > 1 else Image.Resampling.LANCZOS
    return image.resize(size, resample)


def prepare_images(
    data_dir: Path,
    out_dir: Path,
    *,
    sizes_mp: Sequence[float] = DEFAULT_SIZES_MP,
    per_size: int = 2,
    kinds: Sequence[str] = KINDS,
) -> list[SpeedImage]:
    """Encoded test images made from the evaluation set: photo composites saved as JPEG and
    graphic-on-solid images saved as PNG, scaled to each size in ``sizes_mp``."""
    sources: dict[str, list[EvalImage]] = {}
    if PHOTO in kinds:
        sources[PHOTO] = load_eval_set(data_dir, categories=["photo"], limit=per_size)
    if GRAPHIC in kinds:
        graphics = load_eval_set(data_dir, categories=["graphic-solid"])
        sources[GRAPHIC] = [g for g in graphics if g.image.suffix == ".png"][:per_size]
    out_dir.mkdir(parents=True, exist_ok=True)
    prepared: list[SpeedImage] = []
    for megapixels in sizes_mp:
        for kind in kinds:
            for number, source in enumerate(sources[kind]):
                with Image.open(source.image) as opened:
                    image = _resize_to(opened.convert("RGB"), megapixels)
                name = f"{kind}-{megapixels:g}mp-{number}"
                if kind == PHOTO:
                    path = out_dir / f"{name}.jpg"
                    image.save(path, format="JPEG", quality=JPEG_QUALITY)
                else:
                    path = out_dir / f"{name}.png"
                    image.save(path, format="PNG")
                prepared.append(
                    SpeedImage(kind, megapixels, path, image.width, image.height, source.id)
                )
    return prepared


# --- latency ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LatencyStats:
    kind: str
    megapixels: float
    contender: str
    calls: int
    images_per_s: float
    p50_s: float
    p95_s: float
    methods: dict[str, int]


@dataclass
class SpeedReport:
    contenders: list[str]
    model: str
    model_md5: str
    repeat: int
    setup_s: dict[str, float]
    stats: list[LatencyStats] = field(default_factory=list)
    peak_rss_mib: dict[str, float] = field(default_factory=dict)
    setup_rss_mib: dict[str, float] = field(default_factory=dict)

    def get(self, kind: str, megapixels: float, contender: str) -> LatencyStats | None:
        for item in self.stats:
            if (item.kind, item.megapixels, item.contender) == (kind, megapixels, contender):
                return item
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def summarise(
    kind: str, megapixels: float, contender: str, latencies: Sequence[float], methods: Sequence[str]
) -> LatencyStats:
    counts: dict[str, int] = {}
    for method in methods:
        family = method.split(":", 1)[0]
        counts[family] = counts.get(family, 0) + 1
    return LatencyStats(
        kind=kind,
        megapixels=megapixels,
        contender=contender,
        calls=len(latencies),
        images_per_s=len(latencies) / sum(latencies) if latencies else 0.0,
        p50_s=percentile(latencies, 50),
        p95_s=percentile(latencies, 95),
        methods=counts,
    )


Progress = Callable[[int, int], None]


def run_interleaved(
    contenders: Sequence[Contender],
    images: Sequence[SpeedImage],
    *,
    repeat: int,
    progress: Progress | None = None,
) -> list[LatencyStats]:
    """Time every contender on every image ``repeat`` times, interleaved in this process."""
    payloads = [image.path.read_bytes() for image in images]
    # Warm-up (not timed): two calls per contender on the smallest image of each kind.
    seen: set[str] = set()
    for image, data in sorted(zip(images, payloads, strict=True), key=lambda p: p[0].megapixels):
        if image.kind not in seen:
            seen.add(image.kind)
            for _ in range(WARM_UP_CALLS):
                for contender in contenders:
                    contender.cutout(data)

    latencies: dict[tuple[str, float, str], list[float]] = {}
    methods: dict[tuple[str, float, str], list[str]] = {}
    total = repeat * len(images)
    done = 0
    for round_number in range(repeat):
        for index, (image, data) in enumerate(zip(images, payloads, strict=True)):
            order = list(contenders)
            if (round_number + index) % 2 == 1:
                order.reverse()
            for contender in order:
                started = time.perf_counter()
                cut = contender.cutout(data)
                elapsed = time.perf_counter() - started
                key = (image.kind, image.megapixels, contender.name)
                latencies.setdefault(key, []).append(elapsed)
                methods.setdefault(key, []).append(cut.method)
            done += 1
            if progress is not None:
                progress(done, total)
    return [
        summarise(kind, mp, name, latencies[(kind, mp, name)], methods[(kind, mp, name)])
        for (kind, mp, name) in latencies
    ]


# --- memory in child processes ---------------------------------------------------------------


def _rss_mib() -> float:
    return psutil.Process().memory_info().rss / (1 << 20)


def _peak_rss_mib() -> float:
    """This process's peak RSS in MiB.

    On Linux this is ``VmHWM`` of ``/proc/self/status``: ``getrusage().ru_maxrss`` of a child
    started by fork+exec (multiprocessing's ``spawn``) also counts the parent's RSS at the fork,
    so it would report the parent's peak for a small child. Elsewhere: ``ru_maxrss``.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


@dataclass(frozen=True, slots=True)
class ChildMemory:
    contender: str
    images: int
    setup_rss_mib: float  # after imports and model load, before the first image
    peak_rss_mib: float  # high-water RSS of the child at the end (VmHWM)
    checkpoints: dict[int, float]  # image number -> RSS after it, MiB
    seconds: float
    retained: dict[int, float] = field(default_factory=dict)  # same, once the free heap is trimmed


def _child_run(
    contender_name: str,
    settings_data: dict[str, Any],
    model: str,
    paths: list[str],
    count: int,
    checkpoints: list[int],
    out_dir: str | None,
) -> ChildMemory:
    """Runs in a fresh ``spawn`` process: one contender over ``count`` images (cycling)."""
    settings = EngineSettings.model_validate(settings_data)
    contender = make_contender(contender_name, settings=settings, model=model)
    setup_rss = _rss_mib()
    marks = set(checkpoints)
    recorded: dict[int, float] = {}
    retained: dict[int, float] = {}
    started = time.perf_counter()
    for number in range(1, count + 1):
        path = Path(paths[(number - 1) % len(paths)])
        cut = contender.cutout(path.read_bytes())
        if out_dir is not None:  # like `stolentee remove`: every cutout goes to disk
            (Path(out_dir) / f"{number:05d}.png").write_bytes(cut.png)
        if number in marks:
            recorded[number] = _rss_mib()
            # keep=-1: trims whatever the free heap (8 calls in a 500-image run, both contenders)
            if release_free_memory(keep=-1):
                retained[number] = _rss_mib()
    seconds = time.perf_counter() - started
    contender.close()
    return ChildMemory(
        contender=contender_name,
        images=count,
        setup_rss_mib=setup_rss,
        peak_rss_mib=_peak_rss_mib(),
        checkpoints=recorded,
        seconds=seconds,
        retained=retained,
    )


def measure_in_child(
    contender_name: str,
    *,
    settings: EngineSettings,
    model: str,
    paths: Sequence[Path],
    count: int | None = None,
    checkpoints: Sequence[int] = (),
    write_outputs: bool = False,
) -> ChildMemory:
    """Run one contender alone in a spawned child process and return its memory figures."""
    with (
        ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool,
        _maybe_tempdir(write_outputs) as out_dir,
    ):
        future = pool.submit(
            _child_run,
            contender_name,
            settings.model_dump(),
            model,
            [str(p) for p in paths],
            len(paths) if count is None else count,
            list(checkpoints),
            out_dir,
        )
        return future.result()


@contextmanager
def _maybe_tempdir(enabled: bool) -> Iterator[str | None]:
    if not enabled:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="stolentee-bench-") as tmp:
        yield tmp


def run_removal_benchmark(
    *,
    settings: EngineSettings,
    data_dir: Path,
    contender_names: Sequence[str],
    model: str,
    sizes_mp: Sequence[float],
    repeat: int,
    per_size: int,
    measure_rss: bool = True,
    progress: Progress | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> tuple[SpeedReport, list[SpeedImage]]:
    """The whole ``bench removal`` run: prepare images, time interleaved, then RSS per child."""
    with tempfile.TemporaryDirectory(prefix="stolentee-speed-") as tmp:
        images = prepare_images(data_dir, Path(tmp), sizes_mp=sizes_mp, per_size=per_size)
        log(f"{len(images)} images: " + ", ".join(f"{i.kind} {i.width}x{i.height}" for i in images))
        contenders: list[Contender] = []
        setup: dict[str, float] = {}
        for name in contender_names:
            started = time.perf_counter()
            contenders.append(make_contender(name, settings=settings, model=model))
            setup[name] = time.perf_counter() - started
        model_md5 = check_same_model(contenders)
        report = SpeedReport(
            contenders=list(contender_names),
            model=model,
            model_md5=model_md5,
            repeat=repeat,
            setup_s=setup,
        )
        report.stats = run_interleaved(contenders, images, repeat=repeat, progress=progress)
        for contender in contenders:
            contender.close()
        contenders.clear()
        if measure_rss:
            for name in contender_names:
                log(f"peak RSS: running {name} alone in a child process")
                child = measure_in_child(
                    name, settings=settings, model=model, paths=[i.path for i in images]
                )
                report.peak_rss_mib[name] = child.peak_rss_mib
                report.setup_rss_mib[name] = child.setup_rss_mib
        return report, images


# --- memory run --------------------------------------------------------------------------------
