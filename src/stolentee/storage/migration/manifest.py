"""The migration's manifest: one JSON line per object copied, verified, deleted or rewritten, so
that a run resumes where it stopped and every step can be audited or undone."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, cast, get_args

from stolentee.errors import StorageError

logger = logging.getLogger(__name__)


ObjectStatus = Literal["copied", "skipped", "failed", "missing"]


OBJECT_STATUSES: tuple[ObjectStatus, ...] = get_args(ObjectStatus)


VERIFIABLE_STATUSES: tuple[ObjectStatus, ...] = ("copied", "skipped")


class ManifestError(StorageError):
    """The migration manifest cannot be opened or written."""

    code = "manifest_error"
    title = "Migration manifest error"


@dataclass(frozen=True, slots=True)
class ObjectRecord:
    """The outcome of one object in one run, as the manifest stores it."""

    key: str
    size: int
    sha256: str
    status: ObjectStatus
    verified: bool
    run_id: str
    error: str | None = None
    note: str | None = None
    # The storage services' ETags of the two objects when this record was made ("" unknown):
    # a later run that lists both unchanged need not look at either again.
    source_etag: str = ""
    dest_etag: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The manifest line of this record."""
        return {
            "type": "object",
            "key": self.key,
            "size": self.size,
            "sha256": self.sha256,
            "status": self.status,
            "verified": self.verified,
            "error": self.error,
            "note": self.note,
            "run_id": self.run_id,
            "source_etag": self.source_etag,
            "dest_etag": self.dest_etag,
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> ObjectRecord | None:
        """The record in a parsed manifest line, ``None`` when it is malformed."""
        status = record.get("status")
        fields = (record.get("key"), record.get("sha256"), record.get("run_id"))
        size = record.get("size")
        if (
            status not in OBJECT_STATUSES
            or not all(isinstance(value, str) for value in fields)
            or not isinstance(size, int)
            or not isinstance(record.get("verified"), bool)
        ):
            return None
        error, note = record.get("error"), record.get("note")
        source_etag, dest_etag = record.get("source_etag"), record.get("dest_etag")
        return cls(
            key=record["key"],
            size=size,
            sha256=record["sha256"],
            status=cast(ObjectStatus, status),
            verified=record["verified"],
            run_id=record["run_id"],
            error=error if isinstance(error, str) else None,
            note=note if isinstance(note, str) else None,
            source_etag=source_etag if isinstance(source_etag, str) else "",
            dest_etag=dest_etag if isinstance(dest_etag, str) else "",
        )


class Manifest:
    """An append-only JSON-lines log of migration runs, safe to append to from many threads.

    Each line is written whole and flushed, so a killed process leaves every finished record
    readable; a torn last line is skipped when reading (and closed off before appending again).
    """

    def __init__(self, *, path: Path, handle: IO[bytes]) -> None:
        self.path = path
        self._handle = handle
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Manifest(path={str(self.path)!r})"

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Manifest:
        """Open ``path`` for appending, creating it and its parent directories as needed."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = path.open("ab")
        except OSError as exc:
            raise ManifestError(f"cannot open the manifest {str(path)!r}: {exc.strerror}") from exc
        manifest = cls(path=path, handle=handle)
        manifest._close_torn_line()
        return manifest

    def __enter__(self) -> Manifest:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the file; appending afterwards is an error."""
        with self._lock:
            self._handle.close()

    def append(self, record: Mapping[str, Any]) -> None:
        """Write ``record`` as one line and flush it."""
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        data = line.encode("utf-8", "backslashreplace")  # lone surrogates stay valid JSON
        with self._lock:
            try:
                self._handle.write(data)
                self._handle.flush()
            except OSError as exc:
                msg = f"cannot write to the manifest {str(self.path)!r}: {exc.strerror}"
                raise ManifestError(msg) from exc

    def records(self, record_type: str | None = None) -> list[dict[str, Any]]:
        """Every readable record in file order (only those of ``record_type`` when given)."""
        return [
            record
            for record in self.iter_records()
            if record_type is None or record.get("type") == record_type
        ]

    def iter_records(self) -> Iterator[dict[str, Any]]:
        """The records one by one; unreadable lines (a torn write) are logged and skipped."""
        try:
            fh = self.path.open("rb")
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ManifestError(f"cannot read the manifest {str(self.path)!r}: {exc}") from exc
        with fh:
            for number, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                record = _parse_line(raw)
                if record is None:
                    logger.warning("skipping unreadable line %d of %s", number, self.path)
                    continue
                yield record

    def latest_objects(self) -> dict[str, ObjectRecord]:
        """The latest object record of each key (later lines win)."""
        latest: dict[str, ObjectRecord] = {}
        for raw in self.iter_records():
            if raw.get("type") != "object":
                continue
            record = ObjectRecord.from_dict(raw)
            if record is None:
                logger.warning("skipping a malformed object record in %s: %r", self.path, raw)
                continue
            latest[record.key] = record
        return latest

    def verified_keys(self) -> dict[str, str]:
        """Key → sha256 of every key whose latest record is a verified copy or skip."""
        return {
            key: record.sha256
            for key, record in self.latest_objects().items()
            if record.verified and record.status in VERIFIABLE_STATUSES
        }

    def _close_torn_line(self) -> None:
        """End a torn last line (a killed writer) so the next record starts on a line of its own."""
        try:
            with self.path.open("rb") as fh:
                if fh.seek(0, os.SEEK_END) == 0:
                    return
                fh.seek(-1, os.SEEK_END)
                last = fh.read(1)
        except OSError as exc:
            raise ManifestError(f"cannot read the manifest {str(self.path)!r}: {exc}") from exc
        if last != b"\n":
            logger.warning(
                "the last line of %s is torn (a killed run); keeping it apart", self.path
            )
            with self._lock:
                self._handle.write(b"\n")
                self._handle.flush()


def _parse_line(raw: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return record if isinstance(record, dict) else None
