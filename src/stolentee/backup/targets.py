"""Where backups go: ``local:PATH``, ``s3:BUCKET[/PREFIX]`` or ``r2:BUCKET[/PREFIX]``.

A target is a storage backend (the same classes the service stores designs with, so the same
connection profiles and verification) and a key prefix inside it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from stolentee.config import Settings
from stolentee.errors import ConfigurationError
from stolentee.storage.base import ObjectInfo, Storage, validate_prefix
from stolentee.storage.factory import build_named_storage

TARGET_HELP = "local:PATH, s3:BUCKET[/PREFIX] or r2:BUCKET[/PREFIX]"


@dataclass(frozen=True, slots=True)
class BackupTarget:
    """A storage and a prefix; keys given to its methods are relative to the prefix."""

    spec: str
    storage: Storage
    prefix: str = ""

    def key(self, relative: str) -> str:
        return f"{self.prefix}{relative}"

    def put(self, relative: str, data: bytes | BinaryIO, *, content_type: str) -> ObjectInfo:
        return self.storage.put(self.key(relative), data, content_type=content_type)

    def get(self, relative: str) -> bytes:
        return self.storage.get(self.key(relative))

    def open(self, relative: str) -> tuple[ObjectInfo, Iterator[bytes]]:
        return self.storage.open_object(self.key(relative))

    def head(self, relative: str) -> ObjectInfo:
        return self.storage.head(self.key(relative))

    def exists(self, relative: str) -> bool:
        return self.storage.exists(self.key(relative))

    def delete(self, relative: str) -> bool:
        return self.storage.delete(self.key(relative))

    def iterate(self, relative_prefix: str) -> Iterator[ObjectInfo]:
        """Objects under ``relative_prefix``, with keys relative to the target's prefix."""
        cut = len(self.prefix)
        for info in self.storage.iterate(self.key(relative_prefix)):
            yield _relative(info, info.key[cut:])

    def close(self) -> None:
        self.storage.close()


def _relative(info: ObjectInfo, key: str) -> ObjectInfo:
    return ObjectInfo(
        key=key,
        size=info.size,
        content_type=info.content_type,
        sha256=info.sha256,
        last_modified=info.last_modified,
        metadata=info.metadata,
        store_etag=info.store_etag,
    )


def parse_target(spec: str) -> tuple[str, str, str]:
    """``(kind, path or bucket, prefix)`` of a target spec, or a clear error."""
    kind, sep, rest = spec.partition(":")
    if not sep or not rest or kind not in ("local", "s3", "r2"):
        raise ConfigurationError(f"unknown backup target {spec!r}: use {TARGET_HELP}")
    if kind == "local":
        return kind, rest, ""
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ConfigurationError(f"backup target {spec!r} names no bucket: use {TARGET_HELP}")
    prefix = prefix.strip("/")
    return kind, bucket, validate_prefix(f"{prefix}/") if prefix else ""


def open_target(settings: Settings, spec: str) -> BackupTarget:
    """The target ``spec`` names; S3 and R2 use the ``S3_*`` / ``R2_*`` connection settings."""
    kind, location, prefix = parse_target(spec)
    storage = build_named_storage(settings, f"{kind}:{location}")
    return BackupTarget(spec=spec, storage=storage, prefix=prefix)
