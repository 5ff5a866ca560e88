"""The design use case, free of web and queue imports: from a stored original to a stored cutout.

``process_design`` is what a worker runs for a ``design`` job: read the original from storage,
remove its background with the configured remover, store the cutout under a content-addressed
key (``assets/cutouts/<sha256>.<ext>``) so that running a job twice writes the same object, and
return what the design record needs. It never deletes or rewrites the original.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from typing import Any

from stolentee.errors import InvalidFormatError
from stolentee.removal.base import (
    OutputFormat,
    RemovalOptions,
    Remover,
    parse_format,
    parse_kind,
)
from stolentee.storage.base import Storage

CUTOUTS_PREFIX = "assets/cutouts/"
_EXTENSIONS = {
    "image/png": "png",
    "image/webp": "webp",
    "image/jpeg": "jpg",
    "application/zip": "zip",
}


@dataclass(frozen=True, slots=True)
class DesignOutcome:
    """What processing a design produced; stored as the job's result and on the design."""

    cutout_key: str
    content_type: str
    width: int
    height: int
    kind: str
    method: str
    provider: str
    foreground: dict[str, int] | None
    timings_ms: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def cutout_key(data: bytes, content_type: str) -> str:
    """Content-addressed key of a cutout: the same bytes always land on the same key."""
    extension = _EXTENSIONS.get(content_type, "bin")
    return f"{CUTOUTS_PREFIX}{hashlib.sha256(data).hexdigest()}.{extension}"


def design_options(kind: str, fmt: str, *, premium: bool = False) -> RemovalOptions:
    """Options for a design: full size; ``format`` png (default) or webp."""
    output = parse_format(fmt)
    if output not in (OutputFormat.PNG, OutputFormat.WEBP):
        raise InvalidFormatError(f"a design's cutout is png or webp; got {fmt!r}")
    return RemovalOptions(kind=parse_kind(kind), format=output, premium=premium)


def process_design(
    *, storage: Storage, remover: Remover, original_key: str, options: RemovalOptions
) -> DesignOutcome:
    """Remove the background of the stored original and store the cutout."""
    started = time.perf_counter()
    data = storage.get(original_key)
    fetched_ms = (time.perf_counter() - started) * 1000
    result = remover.remove(data, options)
    key = cutout_key(result.data, result.content_type)
    stored_started = time.perf_counter()
    if not storage.exists(key):
        storage.put(
            key,
            result.data,
            content_type=result.content_type,
            metadata={"source": original_key.rsplit("/", 1)[-1][:200]},
        )
    timings = {
        "fetch": round(fetched_ms, 2),
        **result.timings_ms,
        "store": round((time.perf_counter() - stored_started) * 1000, 2),
    }
    box = result.foreground
    return DesignOutcome(
        cutout_key=key,
        content_type=result.content_type,
        width=result.width,
        height=result.height,
        kind=result.kind.value,
        method=result.method,
        provider=result.provider,
        foreground=None
        if box is None
        else {"top": box.top, "left": box.left, "width": box.width, "height": box.height},
        timings_ms=timings,
    )
