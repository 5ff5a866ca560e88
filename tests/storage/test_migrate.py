"""Storage migration: verified, resumable copies between backends, and the guarded source delete."""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from stolentee.errors import ObjectNotFoundError, StorageError
from stolentee.storage.backends.local import LocalStorage
from stolentee.storage.backends.memory import MemoryStorage
from stolentee.storage.base import ObjectInfo, Storage
from stolentee.storage.migration.copier import IN_FLIGHT_PER_WORKER, migrate
from stolentee.storage.migration.delete import (
    DeleteRefusedError,
    check_delete_allowed,
    delete_source,
)
from stolentee.storage.migration.events import ProgressEvent
from stolentee.storage.migration.manifest import Manifest, ObjectRecord
from stolentee.storage.migration.objects import REPLACED_CORRUPT_NOTE
from stolentee.storage.migration.plan import list_both, plan
from stolentee.storage.migration.report import MigrationReport

UNICODE_KEY = "uploads/ünïcödé/日本.png"

# key -> (bytes, content type, metadata)
OBJECTS: dict[str, tuple[bytes, str, dict[str, str]]] = {
    "assets/cutouts/b.webp": (b"RIFF webp bytes" * 50, "image/webp", {}),
    "originals/empty.bin": (b"", "application/x-custom", {"engine": "u2netp"}),
    "uploads/2026/11/a.png": (b"\x89PNG fake" * 100, "image/png", {"owner": "42", "src": "web"}),
    UNICODE_KEY: (b"unicode key", "image/png", {"note": "unicode"}),
}
TOTAL_BYTES = sum(len(data) for data, _, _ in OBJECTS.values())


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fill(storage: Storage, objects: dict[str, tuple[bytes, str, dict[str, str]]]) -> None:
    for key, (data, content_type, metadata) in objects.items():
        storage.put(key, data, content_type=content_type, metadata=metadata)


def _assert_same_objects(source: Storage, dest: Storage) -> None:
    source_keys = [info.key for info in source.iterate()]
    assert [info.key for info in dest.iterate()] == source_keys
    for key in source_keys:
        expected, got = source.head(key), dest.head(key)
        assert dest.get(key) == source.get(key)
        assert (got.sha256, got.size, got.content_type, got.metadata) == (
            expected.sha256,
            expected.size,
            expected.content_type,
            expected.metadata,
        )


def _run(source: Storage, dest: Storage, manifest: Manifest, **kwargs: object) -> MigrationReport:
    return migrate(source, dest, manifest=manifest, concurrency=4, **kwargs)  # type: ignore[arg-type]


# --- backends --------------------------------------------------------------------------------

PAIRS = [("local", "memory"), ("memory", "local"), ("local", "local")]


@pytest.fixture(params=PAIRS, ids=["-".join(pair) for pair in PAIRS])
def backends(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Storage, Storage]:
    """A filled source and an empty destination, for each pair of backends."""
    source_kind, dest_kind = request.param

    def build(kind: str, name: str) -> Storage:
        return LocalStorage(root=tmp_path / name) if kind == "local" else MemoryStorage()

    source, dest = build(source_kind, "source"), build(dest_kind, "dest")
    _fill(source, OBJECTS)
    return source, dest


@pytest.fixture
def manifest(tmp_path: Path) -> Iterator[Manifest]:
    with Manifest.open(tmp_path / "state" / "deep" / "manifest.jsonl") as opened:
        yield opened


@pytest.fixture
def source() -> MemoryStorage:
    storage = MemoryStorage()
    _fill(storage, OBJECTS)
    return storage


class FailingPut(MemoryStorage):
    """Refuses to store the keys in ``fail_keys``."""

    def __init__(self, *, fail_keys: set[str]) -> None:
        super().__init__()
        self.fail_keys = fail_keys

    def put(
        self,
        key: str,
        data: bytes | BinaryIO,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        if key in self.fail_keys:
            raise StorageError("disk full (simulated)")
        return super().put(key, data, content_type=content_type, metadata=metadata)


class LyingHead(MemoryStorage):
    """Reports the head in ``lies`` for a key, whatever it holds, until the key is written."""

    def __init__(self) -> None:
        super().__init__()
        self.lies: dict[str, ObjectInfo] = {}

    def head(self, key: str) -> ObjectInfo:
        return self.lies.get(key) or super().head(key)

    def put(
        self,
        key: str,
        data: bytes | BinaryIO,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        self.lies.pop(key, None)
        return super().put(key, data, content_type=content_type, metadata=metadata)


class VanishingSource(MemoryStorage):
    """Lists ``vanish`` keys, then deletes them before anyone can read them."""

    def __init__(self, *, vanish: set[str]) -> None:
        super().__init__()
        self.vanish = vanish

    def iterate(self, prefix: str = "") -> Iterator[ObjectInfo]:
        listed = list(super().iterate(prefix))
        for key in self.vanish:
            self.delete(key)
        yield from listed


class GarbledReads(MemoryStorage):
    """``open_range`` returns flipped bytes for the first ``bad_reads[key]`` reads of a key."""

    def __init__(self) -> None:
        super().__init__()
        self.bad_reads: dict[str, int] = {}
        self.reads: dict[str, int] = {}
        self.puts: dict[str, int] = {}
        self._counter_lock = threading.Lock()

    def open_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        with self._counter_lock:
            self.reads[key] = self.reads.get(key, 0) + 1
            garble = self.bad_reads.get(key, 0) > 0
            if garble:
                self.bad_reads[key] -= 1
        chunks = super().open_range(key, start, end)
        if not garble:
            return chunks
        return iter([bytes(b ^ 0xFF for b in b"".join(chunks)) or b"x"])

    def put(
        self,
        key: str,
        data: bytes | BinaryIO,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        with self._counter_lock:
            self.puts[key] = self.puts.get(key, 0) + 1
        return super().put(key, data, content_type=content_type, metadata=metadata)


def _corrupt_local_in_place(storage: LocalStorage, key: str) -> None:
    """Flip the first byte of the data file, keeping inode, size and mtime: head() stays stale."""
    path = storage.root.joinpath("objects", *key.split("/"))
    before = path.stat()
    first = path.read_bytes()[:1]
    with path.open("r+b") as fh:
        fh.write(bytes([first[0] ^ 0xFF]))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


# --- plan ------------------------------------------------------------------------------------


def test_plan_counts_objects_and_bytes(backends: tuple[Storage, Storage]) -> None:
    source, _ = backends

    everything = plan(source)
    uploads = plan(source, prefix="uploads/", sample_size=1)

    assert (everything.object_count, everything.total_bytes) == (len(OBJECTS), TOTAL_BYTES)
    assert [info.key for info in everything.sample] == sorted(OBJECTS, key=str.encode)
    assert uploads.object_count == 2
    assert uploads.total_bytes == len(OBJECTS["uploads/2026/11/a.png"][0]) + len(b"unicode key")
    assert [info.key for info in uploads.sample] == ["uploads/2026/11/a.png"]


# --- copying ---------------------------------------------------------------------------------


def test_copies_everything_with_content_types_and_metadata(
    backends: tuple[Storage, Storage], manifest: Manifest
) -> None:
    source, dest = backends

    report = _run(source, dest, manifest)

    assert report.ok
    assert (report.copied, report.skipped, report.failed, report.missing) == (len(OBJECTS), 0, 0, 0)
    assert report.bytes_copied == TOTAL_BYTES
    assert not report.interrupted
    assert report.elapsed_s >= 0
    _assert_same_objects(source, dest)
    assert dest.head("uploads/2026/11/a.png").metadata == {"owner": "42", "src": "web"}
    assert dest.head("originals/empty.bin").content_type == "application/x-custom"

    [run] = manifest.records("run")
    assert run["run_id"] == report.run_id
    assert (run["source"], run["prefix"]) == (repr(source), "")
    assert run["dest"].startswith(type(dest).__name__)  # its repr when the run started
    assert "started_at" in run
    latest = manifest.latest_objects()
    assert set(latest) == set(OBJECTS)
    for key, (data, _, _) in OBJECTS.items():
        record = latest[key]
        assert (record.status, record.verified, record.error) == ("copied", True, None)
        assert (record.sha256, record.size, record.run_id) == (_sha(data), len(data), report.run_id)
    assert manifest.verified_keys() == {key: _sha(data) for key, (data, _, _) in OBJECTS.items()}
    [end] = manifest.records("run_end")
    assert (end["run_id"], end["copied"], end["interrupted"]) == (report.run_id, 4, False)


def test_rerun_skips_everything_after_reading_it_back(
    backends: tuple[Storage, Storage], manifest: Manifest
) -> None:
    source, dest = backends
    _run(source, dest, manifest)
    events: list[ProgressEvent] = []

    report = _run(
        source,
        dest,
        manifest,
        progress=events.append,
        total_objects=len(OBJECTS),
        total_bytes=TOTAL_BYTES,
    )

    assert report.ok
    assert (report.copied, report.skipped, report.bytes_copied) == (0, len(OBJECTS), 0)
    second_run = [r for r in manifest.records("object") if r["run_id"] == report.run_id]
    assert {(r["status"], r["verified"]) for r in second_run} == {("skipped", True)}
    assert len(second_run) == len(OBJECTS)
    assert len(manifest.records("run")) == 2
    # Progress counts skipped bytes too, so it ends at the totals it was given.
    assert [event.objects_done for event in events] == list(range(1, len(OBJECTS) + 1))
    assert events[-1].bytes_done == TOTAL_BYTES
    assert {(e.total_objects, e.total_bytes) for e in events} == {(len(OBJECTS), TOTAL_BYTES)}
    assert {e.key for e in events} == set(OBJECTS)
    assert {e.status for e in events} == {"skipped"}


def test_rerun_without_verify_existing_trusts_the_head(
    source: MemoryStorage, manifest: Manifest
) -> None:
    dest = GarbledReads()
    _run(source, dest, manifest)
    reads_after_copy = dict(dest.reads)

    report = _run(source, dest, manifest, verify_existing=False)

    assert report.skipped == len(OBJECTS)
    assert dest.reads == reads_after_copy  # nothing read back
    assert manifest.verified_keys() == {}  # skipped unread: not verified
    assert {r.status for r in manifest.latest_objects().values()} == {"skipped"}


def test_corrupt_local_destination_is_detected_and_replaced(
    source: MemoryStorage, manifest: Manifest, tmp_path: Path
) -> None:
    dest = LocalStorage(root=tmp_path / "dest")
    _run(source, dest, manifest)
    key = "uploads/2026/11/a.png"
    original = OBJECTS[key][0]
    _corrupt_local_in_place(dest, key)
    assert dest.get(key) != original
    assert dest.head(key).sha256 == _sha(original)  # stale metadata: only a read-back can tell

    report = _run(source, dest, manifest)

    assert (report.copied, report.skipped) == (1, len(OBJECTS) - 1)
    assert dest.get(key) == original
    record = manifest.latest_objects()[key]
    assert (record.status, record.verified, record.note) == ("copied", True, REPLACED_CORRUPT_NOTE)
    assert report.ok


def test_corrupt_destination_behind_a_lying_head_is_replaced(
    source: MemoryStorage, manifest: Manifest
) -> None:
    dest = LyingHead()
    _run(source, dest, manifest)
    key = "assets/cutouts/b.webp"
    good = dest.head(key)
    original = OBJECTS[key][0]
    dest.put(key, b"X" * len(original), content_type="image/webp")
    dest.lies[key] = good

    report = _run(source, dest, manifest)

    assert report.copied == 1
    assert dest.get(key) == original
    assert manifest.latest_objects()[key].note == REPLACED_CORRUPT_NOTE


def test_object_gone_from_the_source_is_missing(manifest: Manifest) -> None:
    gone = "assets/cutouts/b.webp"
    source = VanishingSource(vanish={gone})
    _fill(source, OBJECTS)
    dest = MemoryStorage()

    report = _run(source, dest, manifest)

    assert not report.ok
    assert (report.copied, report.missing, report.failed) == (len(OBJECTS) - 1, 1, 0)
    [failure] = report.failures
    assert (failure.key, failure.status) == (gone, "missing")
    assert "gone from the source" in failure.error
    assert not dest.exists(gone)
    record = manifest.latest_objects()[gone]
    assert (record.status, record.verified) == ("missing", False)


def test_failed_put_is_recorded_and_the_others_copied(
    source: MemoryStorage, manifest: Manifest
) -> None:
    bad = "uploads/2026/11/a.png"
    dest = FailingPut(fail_keys={bad})

    report = _run(source, dest, manifest)

    assert not report.ok
    assert (report.copied, report.failed) == (len(OBJECTS) - 1, 1)
    [failure] = report.failures
    assert failure.key == bad
    assert "disk full (simulated)" in failure.error
    assert "writing to the destination" in failure.error
    record = manifest.latest_objects()[bad]
    assert (record.status, record.verified) == ("failed", False)
    assert record.error is not None
    assert "disk full" in record.error
    assert bad not in manifest.verified_keys()

    dest.fail_keys.clear()
    retry = _run(source, dest, manifest)

    assert retry.ok
    assert (retry.copied, retry.skipped) == (1, len(OBJECTS) - 1)
    assert manifest.latest_objects()[bad].status == "copied"


def test_source_changed_while_read_is_read_again(manifest: Manifest) -> None:
    source = GarbledReads()
    _fill(source, OBJECTS)
    key = "uploads/2026/11/a.png"
    source.bad_reads[key] = 1
    dest = MemoryStorage()

    report = _run(source, dest, manifest)

    assert report.ok
    assert source.reads[key] == 2
    assert dest.get(key) == OBJECTS[key][0]


def test_source_that_never_matches_its_sha_fails(manifest: Manifest) -> None:
    source = GarbledReads()
    _fill(source, OBJECTS)
    key = "uploads/2026/11/a.png"
    source.bad_reads[key] = 99
    dest = MemoryStorage()

    report = _run(source, dest, manifest)

    assert report.failed == 1
    assert report.copied == len(OBJECTS) - 1
    assert not dest.exists(key)
    assert "do not match its sha256 on two reads" in report.failures[0].error


def test_destination_read_back_mismatch_is_copied_once_more(
    source: MemoryStorage, manifest: Manifest
) -> None:
    dest = GarbledReads()
    key = "assets/cutouts/b.webp"
    dest.bad_reads[key] = 1

    report = _run(source, dest, manifest)

    assert report.ok
    assert dest.puts[key] == 2
    assert manifest.latest_objects()[key].verified


def test_destination_that_never_reads_back_right_fails(
    source: MemoryStorage, manifest: Manifest
) -> None:
    dest = GarbledReads()
    key = "assets/cutouts/b.webp"
    dest.bad_reads[key] = 99

    report = _run(source, dest, manifest)

    assert (report.failed, report.copied) == (1, len(OBJECTS) - 1)
    assert dest.puts[key] == 2
    assert "does not match after a re-copy" in report.failures[0].error
    assert key not in manifest.verified_keys()


def test_listing_failure_is_reported(manifest: Manifest) -> None:
    class BrokenListing(MemoryStorage):
        def iterate(self, prefix: str = "") -> Iterator[ObjectInfo]:
            yield from list(super().iterate(prefix))[:1]
            raise StorageError("listing timed out (simulated)")

    source = BrokenListing()
    _fill(source, OBJECTS)

    report = _run(source, MemoryStorage(), manifest)

    assert report.copied == 1
    assert not report.ok
    assert report.listing_error is not None
    assert "listing timed out" in report.listing_error


class CountedListings(MemoryStorage):
    """Counts how often it is listed."""

    def __init__(self) -> None:
        super().__init__()
        self.listings = 0

    def iterate(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self.listings += 1
        yield from super().iterate(prefix)


def test_listings_made_up_front_replace_the_runs_own(manifest: Manifest) -> None:
    source, dest = CountedListings(), CountedListings()
    _fill(source, OBJECTS)
    _fill(dest, {"uploads/2026/11/a.png": OBJECTS["uploads/2026/11/a.png"]})

    listings = list_both(source, dest, prefix="uploads/")
    report = _run(source, dest, manifest, prefix="uploads/", listings=listings)

    assert (source.listings, dest.listings) == (1, 1)  # once each, by list_both only
    assert [entry.key for entry in listings.source] == ["uploads/2026/11/a.png", UNICODE_KEY]
    assert set(listings.dest) == {"uploads/2026/11/a.png"}
    assert listings.plan() == plan(source, prefix="uploads/")
    assert (report.copied, report.skipped, report.failed) == (1, 1, 0)
    assert dest.get(UNICODE_KEY) == b"unicode key"


def test_listings_of_another_prefix_are_refused(source: MemoryStorage, manifest: Manifest) -> None:
    listings = list_both(source, MemoryStorage(), prefix="uploads/")

    with pytest.raises(ValueError, match="prefix"):
        _run(source, MemoryStorage(), manifest, prefix="assets/", listings=listings)
    assert manifest.records("run") == []


def test_a_failing_listing_up_front_raises() -> None:
    class BrokenListing(MemoryStorage):
        def iterate(self, prefix: str = "") -> Iterator[ObjectInfo]:
            raise StorageError("listing refused (simulated)")
            yield  # a generator

    with pytest.raises(StorageError, match="listing refused"):
        list_both(MemoryStorage(), BrokenListing())
    with pytest.raises(StorageError, match="listing refused"):
        list_both(BrokenListing(), MemoryStorage())


def test_stop_event_interrupts_and_a_rerun_resumes(tmp_path: Path, manifest: Manifest) -> None:
    source = LocalStorage(root=tmp_path / "source")
    _fill(source, {f"uploads/{n:03d}.bin": (b"%d" % n, "", {}) for n in range(20)})
    dest = MemoryStorage()
    stop = threading.Event()

    def stop_after_three(event: ProgressEvent) -> None:
        if event.objects_done == 3:
            stop.set()

    report = migrate(
        source, dest, manifest=manifest, concurrency=1, progress=stop_after_three, stop=stop
    )

    assert report.interrupted
    assert not report.ok
    assert report.copied == 3
    assert len(list(dest.iterate())) == 3
    assert manifest.records("run_end")[-1]["interrupted"] is True

    resumed = migrate(source, dest, manifest=manifest, concurrency=4)

    assert resumed.ok
    assert (resumed.copied, resumed.skipped) == (17, 3)
    _assert_same_objects(source, dest)


def test_in_flight_objects_are_bounded(manifest: Manifest) -> None:
    many = MemoryStorage()
    _fill(many, {f"assets/{n:04d}.bin": (b"x", "", {}) for n in range(200)})
    listed = 0
    gate = threading.Event()

    class CountingListing(MemoryStorage):
        def iterate(self, prefix: str = "") -> Iterator[ObjectInfo]:
            nonlocal listed
            for info in many.iterate(prefix):
                listed += 1
                yield info

        def head(self, key: str) -> ObjectInfo:
            return many.head(key)

        def open_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
            gate.wait(timeout=10)  # every worker is stuck on its first object
            return many.open_range(key, start, end)

    reports: list[MigrationReport] = []
    runner = threading.Thread(
        target=lambda: reports.append(
            migrate(CountingListing(), MemoryStorage(), manifest=manifest, concurrency=2)
        )
    )
    runner.start()
    time.sleep(0.3)
    listed_while_blocked = listed
    gate.set()
    runner.join(timeout=10)

    assert listed_while_blocked <= 2 * IN_FLIGHT_PER_WORKER + 1
    assert reports[0].copied == 200


def test_large_object_is_copied_and_verified(tmp_path: Path, manifest: Manifest) -> None:
    data = hashlib.sha256(b"large").digest() * (12 * 1024 * 1024 // 32) + b"tail"
    source = LocalStorage(root=tmp_path / "source")
    dest = LocalStorage(root=tmp_path / "dest")
    source.put("assets/large.bin", io.BytesIO(data), content_type="image/png")

    report = migrate(source, dest, manifest=manifest)

    assert report.ok
    assert report.bytes_copied == len(data)
    assert dest.head("assets/large.bin").sha256 == _sha(data)
    assert dest.head("assets/large.bin").content_type == "image/png"
    assert manifest.verified_keys() == {"assets/large.bin": _sha(data)}


def test_unicode_keys_round_trip_through_the_manifest(
    source: MemoryStorage, manifest: Manifest
) -> None:
    _run(source, MemoryStorage(), manifest)

    reopened = Manifest.open(manifest.path)
    try:
        assert reopened.verified_keys()[UNICODE_KEY] == _sha(OBJECTS[UNICODE_KEY][0])
    finally:
        reopened.close()
    assert UNICODE_KEY in manifest.path.read_text(encoding="utf-8")


def test_concurrency_must_be_positive(source: MemoryStorage, manifest: Manifest) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        migrate(source, MemoryStorage(), manifest=manifest, concurrency=0)


# --- the manifest ----------------------------------------------------------------------------


def test_torn_last_line_is_tolerated_and_kept_apart(source: MemoryStorage, tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    dest = MemoryStorage()
    with Manifest.open(path) as manifest:
        _run(source, dest, manifest)
    with path.open("ab") as fh:
        fh.write(b'{"type": "object", "key": "uploads/torn')  # a killed writer

    with Manifest.open(path) as manifest:
        assert set(manifest.verified_keys()) == set(OBJECTS)
        report = _run(source, dest, manifest)
        runs = manifest.records("run")

    assert report.skipped == len(OBJECTS)
    assert [run["run_id"] for run in runs][-1] == report.run_id  # not glued to the torn line
    lines = path.read_bytes().split(b"\n")
    assert b'{"type": "object", "key": "uploads/torn' in lines


def test_unknown_record_types_are_kept(manifest: Manifest) -> None:
    manifest.append({"type": "rewrite", "table": "designs", "rows": 3})
    manifest.append({"type": "object", "key": "a.png"})  # malformed object record

    assert manifest.records("rewrite") == [{"type": "rewrite", "table": "designs", "rows": 3}]
    assert len(manifest.records()) == 2
    assert manifest.latest_objects() == {}


def test_latest_object_record_wins(manifest: Manifest) -> None:
    def record(status: str, verified: bool, sha: str) -> dict[str, object]:
        return ObjectRecord(
            key="a.png",
            size=1,
            sha256=sha,
            status=status,  # type: ignore[arg-type]
            verified=verified,
            run_id="r",
        ).to_dict()

    manifest.append(record("copied", True, "1" * 64))
    manifest.append(record("skipped", True, "2" * 64))
    assert manifest.verified_keys() == {"a.png": "2" * 64}

    manifest.append(record("failed", False, "2" * 64))
    assert manifest.latest_objects()["a.png"].status == "failed"
    assert manifest.verified_keys() == {}


def test_appends_from_many_threads_stay_whole_lines(manifest: Manifest) -> None:
    def write(worker: int) -> None:
        for n in range(200):
            manifest.append({"type": "object-test", "worker": worker, "n": n, "pad": "x" * 500})

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    lines = manifest.path.read_bytes().splitlines()
    assert len(lines) == 8 * 200
    assert all(json.loads(line)["pad"] == "x" * 500 for line in lines)


# --- deleting the source ---------------------------------------------------------------------


def _migrated(tmp_path: Path, manifest: Manifest) -> tuple[LocalStorage, MemoryStorage]:
    source = LocalStorage(root=tmp_path / "source")
    _fill(source, OBJECTS)
    dest = MemoryStorage()
    assert migrate(source, dest, manifest=manifest).ok
    return source, dest


def test_delete_refused_while_an_object_is_unverified(tmp_path: Path, manifest: Manifest) -> None:
    source, _ = _migrated(tmp_path, manifest)
    source.put("uploads/new-since.png", b"uploaded after the migration")

    with pytest.raises(DeleteRefusedError) as caught:
        check_delete_allowed(source, manifest)

    assert caught.value.extra["unverified"] == ["uploads/new-since.png"]
    assert caught.value.extra["changed_count"] == 0
    assert "never copied and verified" in caught.value.detail
    assert source.exists("uploads/2026/11/a.png")


def test_delete_refused_when_an_object_changed_since(tmp_path: Path, manifest: Manifest) -> None:
    source, _ = _migrated(tmp_path, manifest)
    source.put("uploads/2026/11/a.png", b"replaced by the user")

    with pytest.raises(DeleteRefusedError) as caught:
        check_delete_allowed(source, manifest)

    assert caught.value.extra["changed"] == ["uploads/2026/11/a.png"]
    assert caught.value.extra["unverified_count"] == 0


def test_delete_refused_after_a_failed_recopy(tmp_path: Path, manifest: Manifest) -> None:
    source, _ = _migrated(tmp_path, manifest)
    failing = FailingPut(fail_keys={"assets/cutouts/b.webp"})
    _fill(failing, {k: v for k, v in OBJECTS.items() if k != "assets/cutouts/b.webp"})
    migrate(source, failing, manifest=manifest)

    with pytest.raises(DeleteRefusedError):
        check_delete_allowed(source, manifest)


def test_delete_source_when_fully_covered(tmp_path: Path, manifest: Manifest) -> None:
    source, dest = _migrated(tmp_path, manifest)
    events: list[ProgressEvent] = []

    delete_plan = check_delete_allowed(source, manifest)
    deleted = delete_source(source, delete_plan, progress=events.append)

    assert delete_plan.object_count == len(OBJECTS)
    assert delete_plan.total_bytes == TOTAL_BYTES
    assert deleted == len(OBJECTS)
    assert list(source.iterate()) == []
    assert [info.key for info in dest.iterate()] == sorted(OBJECTS, key=str.encode)
    assert {event.status for event in events} == {"deleted"}
    assert events[-1].bytes_done == TOTAL_BYTES


def test_delete_source_keeps_an_object_changed_after_the_plan(
    tmp_path: Path, manifest: Manifest
) -> None:
    source, _ = _migrated(tmp_path, manifest)
    delete_plan = check_delete_allowed(source, manifest, prefix="uploads/")
    source.put("uploads/2026/11/a.png", b"changed after planning")

    deleted = delete_source(source, delete_plan)

    assert deleted == 1
    assert source.get("uploads/2026/11/a.png") == b"changed after planning"
    with pytest.raises(ObjectNotFoundError):
        source.head(UNICODE_KEY)
    assert source.exists("assets/cutouts/b.webp")  # outside the prefix


def test_migrate_never_deletes_from_the_source(
    backends: tuple[Storage, Storage], manifest: Manifest
) -> None:
    source, dest = backends
    before = [(info.key, info.sha256) for info in source.iterate()]

    _run(source, dest, manifest)
    _run(source, dest, manifest)

    assert [(info.key, info.sha256) for info in source.iterate()] == before
