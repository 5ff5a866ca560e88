"""The memory benchmark: resident size over a long sequential run, each cutout written to disk as
stolentee remove does, at checkpoints and at its peak."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any

from stolentee.bench.quality import load_eval_set
from stolentee.bench.speed import ChildMemory, measure_in_child
from stolentee.config import EngineSettings


@dataclass
class MemoryReport:
    images: int
    model: str
    runs: list[ChildMemory] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def memory_checkpoints(count: int) -> list[int]:
    marks = {1, 10, 50, 100, count}
    marks.update(range(100, count + 1, 100))
    return sorted(m for m in marks if 1 <= m <= count)


def run_memory_benchmark(
    *,
    settings: EngineSettings,
    data_dir: Path,
    contender_names: Sequence[str],
    model: str,
    count: int,
    log: Callable[[str], None] = lambda _: None,
) -> MemoryReport:
    """Each contender alone in a child: ``count`` images from the evaluation set (all
    categories, cycling), each cutout written to disk like ``stolentee remove`` does."""
    by_category: dict[str, list[Path]] = {}
    for image in load_eval_set(data_dir):
        by_category.setdefault(image.category, []).append(image.image)
    # Round-robin over the categories, so any stretch of the run mixes photos and graphics.
    paths = [
        path for group in zip_longest(*by_category.values()) for path in group if path is not None
    ]
    report = MemoryReport(images=count, model=model)
    for name in contender_names:
        log(f"memory: {name} over {count} images in a child process")
        report.runs.append(
            measure_in_child(
                name,
                settings=settings,
                model=model,
                paths=paths,
                count=count,
                checkpoints=memory_checkpoints(count),
                write_outputs=True,
            )
        )
    return report
