"""The record a model built on this machine carries next to its file.

``stolentee models quantize`` writes ``<file>.json`` beside the int8 model it builds, last and
atomically: what it was built from (the float model's name and md5), the file's own md5, and the
agreement check it passed. The catalogue counts such a model as installed only with a record that
says it passed and, when verifying, whose md5 matches the file: a model that failed its check, or
whose file was swapped or truncated, is never served.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class BuildRecord:
    model: str  # the built model's name (isnet-int8)
    source: str  # the float model it was built from (isnet)
    source_md5: str
    md5: str  # of the built file
    passed: bool
    floor: float  # the agreement floor (IoU with the float model's masks): of the mean
    agreement_mean: float
    agreement_min: float
    calibration_images: int
    evaluation_images: int
    float_seconds: float  # median seconds of one inference, float model
    int8_seconds: float  # the same, built model
    onnxruntime: str
    created: str  # ISO 8601, UTC
    lowest_floor: float | None = None  # the floor of the lowest photo's IoU; None: ``floor``

    @property
    def photo_floor(self) -> float:
        return self.floor if self.lowest_floor is None else self.lowest_floor

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True) + "\n"


def record_path(model_file: Path) -> Path:
    return model_file.with_name(model_file.name + ".json")


def read_record(model_file: Path) -> BuildRecord | None:
    """The record beside ``model_file``, or None when it is missing or not a valid record
    (hand-edited, truncated, another version's fields)."""
    try:
        raw: Any = json.loads(record_path(model_file).read_text(encoding="utf-8"))
        return BuildRecord(**raw) if isinstance(raw, dict) else None
    except (OSError, ValueError, TypeError):
        return None


def write_record(model_file: Path, record: BuildRecord) -> None:
    """Write the record atomically (temporary file, fsync, rename)."""
    target = record_path(model_file)
    partial = target.with_name(f".{target.name}.partial")
    with partial.open("w", encoding="utf-8") as handle:
        handle.write(record.to_json())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, target)
