"""Names and defaults of the benchmarks, importable without numpy or the engine (the CLI needs
them to build its options; the heavy modules are imported only when a benchmark runs)."""

from __future__ import annotations

from pathlib import Path

OURS = "stolentee"
REMBG = "rembg"
BARE = "bare"  # the model run the plain way: resize, normalise, min-max, bilinear upscale
DEFAULT_TOLERANCE_PX = 2  # boundary tolerance of the boundary-F metric
DEFAULT_DATA_DIR = Path("benchmarks/data")
CATEGORIES = ("graphic-solid", "graphic-gradient", "photo")
DEFAULT_SIZES_MP = (1.0, 4.0, 12.0)
