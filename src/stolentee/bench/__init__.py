"""Benchmarks against the open-source peer (rembg): matte quality on a known-truth evaluation set,
speed and memory of the whole pipeline. Run them with ``stolentee bench``; see
``benchmarks/removal.md``.
"""
