"""The C heap of a removal process: glibc tuned so inference and image work share one working set,
and free pages handed back between images beyond a model-sized reserve."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
from collections.abc import Callable

_M_TRIM_THRESHOLD = -1  # mallopt parameters (glibc's malloc.h)


_M_MMAP_THRESHOLD = -3


_M_ARENA_MAX = -8


_ARENA_MAX = 2  # as MALLOC_ARENA_MAX=2 in the Dockerfile


_HEAP_MMAP_THRESHOLD = 256 << 20  # allocations below this come from the heap and are reused


_HEAP_TRIM_THRESHOLD = 512 << 20  # free memory at the top of the heap kept for reuse


_malloc_tuned = False


_trim_threshold = 0  # the trim threshold set so far


_malloc_lock = threading.Lock()


def tune_malloc(reserve: int = 0) -> bool:
    """Make glibc's heap serve as the one arena that inference and image work share.

    With onnxruntime's own arena off, the model's tensors come from malloc. By default glibc maps
    every block over its (adaptive) mmap threshold afresh and unmaps it on free, so each
    inference would fault its zeroed pages in again, at a measurable CPU cost. Raising the mmap
    and trim thresholds keeps those blocks in the heap: the next inference reuses them without a
    page fault, and so do the full-resolution arrays of decoding, keying and encoding, so the
    process holds the larger of the two working sets instead of their sum. At most two malloc
    arenas (as ``MALLOC_ARENA_MAX=2`` in the Dockerfile): with one heap per thread (onnxruntime's
    pool, the PNG encoder's) the high-water mark varied widely from run to run. Process-wide and
    once; elsewhere than glibc it does nothing. Returns whether it was applied. Figures:
    benchmarks/decisions.md, "onnxruntime memory".

    ``reserve`` (bytes): the free heap a model keeps between images
    (:func:`release_free_memory`); the trim threshold is raised to it, so that glibc does not
    hand back on its own, at every ``free``, the blocks the next inference will reuse.
    """
    global _malloc_tuned, _trim_threshold
    with _malloc_lock:
        if _malloc_tuned:
            if reserve > _trim_threshold and _set_option(_M_TRIM_THRESHOLD, reserve):
                _trim_threshold = reserve
            return True
        if not sys.platform.startswith("linux"):
            return False
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):
            return False
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        mallopt.restype = ctypes.c_int
        trim = max(_HEAP_TRIM_THRESHOLD, reserve)
        applied = int(mallopt(_M_MMAP_THRESHOLD, _HEAP_MMAP_THRESHOLD)) == 1
        applied = int(mallopt(_M_TRIM_THRESHOLD, trim)) == 1 and applied
        applied = int(mallopt(_M_ARENA_MAX, _ARENA_MAX)) == 1 and applied
        _malloc_tuned = applied
        _trim_threshold = trim if applied else 0
        return applied


def _set_option(option: int, value: int) -> bool:
    """One ``mallopt`` call (glibc only; :func:`tune_malloc` has found it there)."""
    mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return int(mallopt(option, min(value, 2**31 - 1))) == 1


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (2.33+): heap statistics over all malloc arenas, in bytes."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",  # bytes in use
            "fordblks",  # bytes in free chunks (resident or already handed back by a trim)
            "keepcost",
        )
    ]


def _find_malloc_trim() -> Callable[[int], object] | None:
    """glibc's ``malloc_trim(pad)``, or None where the C library has none (musl, macOS)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda pad: trim(pad)


def _find_free_heap() -> Callable[[], int] | None:
    """Bytes free in glibc's heap (``mallinfo2().fordblks``), or None without glibc 2.33+."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        mallinfo2 = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.argtypes = []
    mallinfo2.restype = _MallInfo2
    return lambda: int(mallinfo2().fordblks)


_MALLOC_TRIM = _find_malloc_trim()


_FREE_HEAP = _find_free_heap()


# Free heap kept for the next image: about the default model's inference working set, with the
# room a 1-4 MP image leaves free (benchmarks/decisions.md, "the free-heap reserve").
# Within it the next inference reuses those blocks instead of faulting its tensors in again;
# beyond it (a larger image, fragmentation piling up) the heap is trimmed. Larger models name
# their own reserve (ModelSpec.heap_reserve_mb), which the engine passes as ``keep``.
KEEP_FREE_HEAP_BYTES = 320 << 20


def free_heap_bytes() -> int | None:
    """Bytes in the C heap's free chunks, or None where that cannot be read."""
    return _FREE_HEAP() if _FREE_HEAP is not None else None


def release_free_memory(keep: int | None = None) -> bool:
    """Hand the C heap's free pages back to the system (glibc; elsewhere nothing) when the heap
    holds more than ``keep`` bytes free (default :data:`KEEP_FREE_HEAP_BYTES`); returns whether
    it trimmed. Called after each image, once its full-size buffers are freed.

    Without it the heap keeps the high-water mark of every image so far plus fragmentation,
    which depends on thread timing, so the same run peaked at very different sizes. Trimming
    after every image made each start from a clean heap, but then the next inference faulted
    its tensors in again, at a clear CPU cost. With a model-sized reserve, the blocks kept are
    the ones the next inference reuses, the free heap between images stays bounded, and the
    heap is still trimmed after larger images and whenever fragmentation piles up.
    ``fordblks`` also counts free chunks whose pages an earlier trim already handed back, so the
    measure errs towards trimming, never towards holding. Two alternatives (``malloc_trim(pad)``
    keeping the top of the heap; the resident size above the size after the last trim) peaked
    higher. Figures: benchmarks/decisions.md, "the free-heap reserve".
    """
    if _MALLOC_TRIM is None:
        return False
    limit = KEEP_FREE_HEAP_BYTES if keep is None else keep
    free = free_heap_bytes()
    if free is not None and free <= limit:
        return False
    _MALLOC_TRIM(0)
    return True
