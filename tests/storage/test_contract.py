"""The storage contract, run against every backend (see ``BACKENDS`` in conftest.py)."""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stolentee.errors import InvalidKeyError, ObjectNotFoundError, RangeNotSatisfiableError
from stolentee.storage.base import (
    CHUNK_BYTES,
    MAX_KEY_BYTES,
    MAX_SEGMENT_BYTES,
    ObjectInfo,
    Storage,
    validate_key,
)
from tests.storage.conftest import (
    StorageFactory,
    in_listing_order,
    listing_sort_key,
    utf8_order,
)

UNICODE_KEY = "uploads/ünïcödé/日本.png"

# Sorted by UTF-8 bytes: '-' (0x2d) < '.' (0x2e) < '/' (0x2f) < '0' (0x30) < 'z' < 'ü' < '日'.
# A file-system walk that sorted directory names without their '/' would get this wrong.
ORDERED_KEYS = [
    "assets/cutouts/x.png",
    "originals/y.jpg",
    "uploads/a-c.png",
    "uploads/a.png",
    "uploads/a/b.png",
    "uploads/a/c/d.png",
    "uploads/a0.png",
    "uploads/z.png",
    "uploads/ünïcödé/日本.png",
    "uploads/日本.png",
]


def _put_all(storage: Storage, keys: list[str]) -> None:
    for key in reversed(keys):  # insertion order must not matter
        storage.put(key, key.encode())


def same_object(head: ObjectInfo, put: ObjectInfo) -> bool:
    """``put``'s answer describes the stored object. Its ``last_modified`` may be the writer's
    clock rather than the server's (S3 answers a PUT without Last-Modified), so within 2 s."""
    close = abs(head.last_modified - put.last_modified) <= timedelta(seconds=2)
    return close and replace(head, last_modified=put.last_modified) == put


def _keys(objects: list[ObjectInfo]) -> list[str]:
    return [info.key for info in objects]


class ChunkedReader(io.RawIOBase):
    """A BinaryIO that refuses to be read all at once and records the sizes asked for."""

    def __init__(self, data: bytes) -> None:
        self._buffer = io.BytesIO(data)
        self.requested: list[int] = []

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        assert size is not None and size > 0, "put must read a stream in chunks"
        self.requested.append(size)
        return self._buffer.read(size)


# --- put / get / head / exists ---------------------------------------------------------------


def test_put_then_get_head_exists(storage: Storage) -> None:
    data = b"\x89PNG fake image"
    before = datetime.now(UTC) - timedelta(seconds=2)

    info = storage.put("uploads/2026/11/ab12.png", data, metadata={"owner": "42"})

    assert storage.get("uploads/2026/11/ab12.png") == data
    assert storage.exists("uploads/2026/11/ab12.png")
    assert same_object(storage.head("uploads/2026/11/ab12.png"), info)
    assert info.key == "uploads/2026/11/ab12.png"
    assert info.size == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.etag == f'"{info.sha256}"'
    assert info.content_type == "image/png"
    assert info.metadata == {"owner": "42"}
    assert info.last_modified.tzinfo is not None
    assert info.last_modified.utcoffset() == timedelta(0)
    assert before <= info.last_modified <= datetime.now(UTC) + timedelta(seconds=2)


@pytest.mark.parametrize(
    ("key", "given_type", "expected"),
    [
        ("assets/a.png", None, "image/png"),
        ("assets/a.webp", None, "image/webp"),
        ("assets/a.unknown-ext", None, "application/octet-stream"),
        ("assets/noext", None, "application/octet-stream"),
        ("assets/a.png", "image/webp", "image/webp"),
        ("assets/a.txt", "text/plain; charset=utf-8", "text/plain; charset=utf-8"),
    ],
)
def test_content_type_given_or_guessed(
    storage: Storage, key: str, given_type: str | None, expected: str
) -> None:
    storage.put(key, b"x", content_type=given_type)
    assert storage.head(key).content_type == expected


def test_content_type_with_line_break_is_rejected(storage: Storage) -> None:
    with pytest.raises(InvalidKeyError):
        storage.put("assets/a.png", b"x", content_type="image/png\r\nX-Evil: 1")
    assert not storage.exists("assets/a.png")


def test_metadata_is_preserved_and_names_lower_cased(storage: Storage) -> None:
    storage.put("assets/m.bin", b"m", metadata={"Source-SHA": "abc", "engine": "u2netp"})
    assert storage.head("assets/m.bin").metadata == {"source-sha": "abc", "engine": "u2netp"}


@pytest.mark.parametrize(
    "metadata", [{"bad name": "x"}, {"ok": "caf\u00e9"}, {"ok": "line\nbreak"}, {"": "x"}]
)
def test_invalid_metadata_is_rejected(storage: Storage, metadata: dict[str, str]) -> None:
    with pytest.raises(InvalidKeyError):
        storage.put("assets/m.bin", b"m", metadata=metadata)
    assert not storage.exists("assets/m.bin")


def test_head_returns_a_copy_of_metadata(storage: Storage) -> None:
    storage.put("assets/m.bin", b"m", metadata={"a": "1"})
    storage.head("assets/m.bin").metadata["a"] = "changed"
    assert storage.head("assets/m.bin").metadata == {"a": "1"}


def test_empty_object(storage: Storage) -> None:
    info = storage.put("uploads/empty.txt", b"")
    assert info.size == 0
    assert info.sha256 == hashlib.sha256(b"").hexdigest()
    assert storage.get("uploads/empty.txt") == b""
    assert b"".join(storage.open_range("uploads/empty.txt")) == b""


def test_overwrite_replaces_content_type_sha_and_metadata(storage: Storage) -> None:
    storage.put("uploads/o.png", b"first", content_type="image/png", metadata={"a": "1"})

    info = storage.put("uploads/o.png", b"second!", content_type="text/plain", metadata={"b": "2"})

    assert storage.get("uploads/o.png") == b"second!"
    head = storage.head("uploads/o.png")
    assert same_object(head, info)
    assert head.size == 7
    assert head.sha256 == hashlib.sha256(b"second!").hexdigest()
    assert head.content_type == "text/plain"
    assert head.metadata == {"b": "2"}
    assert _keys(storage.list("uploads/").objects) == ["uploads/o.png"]


def test_unicode_key_round_trips(storage: Storage) -> None:
    storage.put(UNICODE_KEY, b"unicode")
    assert storage.get(UNICODE_KEY) == b"unicode"
    assert storage.head(UNICODE_KEY).key == UNICODE_KEY
    assert _keys(storage.list("uploads/ünïcödé/").objects) == [UNICODE_KEY]
    assert storage.delete(UNICODE_KEY)


def test_large_object_is_streamed_from_a_binary_io(storage: Storage) -> None:
    data = hashlib.sha256(b"seed").digest() * (8 * 1024 * 1024 // 32) + b"tail"
    reader = ChunkedReader(data)

    info = storage.put("assets/large.bin", reader)  # type: ignore[arg-type]

    assert len(reader.requested) > 1
    assert info.size == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert storage.get("assets/large.bin") == data
    middle = 4 * 1024 * 1024
    chunks = list(storage.open_range("assets/large.bin", middle, middle + 3 * CHUNK_BYTES))
    assert all(len(chunk) <= CHUNK_BYTES for chunk in chunks)
    assert b"".join(chunks) == data[middle : middle + 3 * CHUNK_BYTES + 1]


def test_put_accepts_a_bytes_io(storage: Storage) -> None:
    info = storage.put("uploads/s.bin", io.BytesIO(b"streamed"))
    assert info.size == 8
    assert storage.get("uploads/s.bin") == b"streamed"


# --- missing keys ----------------------------------------------------------------------------


def test_missing_key(storage: Storage) -> None:
    with pytest.raises(ObjectNotFoundError):
        storage.get("uploads/missing.png")
    with pytest.raises(ObjectNotFoundError):
        storage.head("uploads/missing.png")
    with pytest.raises(ObjectNotFoundError):
        b"".join(storage.open_range("uploads/missing.png"))
    assert not storage.exists("uploads/missing.png")
    assert storage.delete("uploads/missing.png") is False


def test_a_prefix_of_a_key_is_not_an_object(storage: Storage) -> None:
    storage.put("uploads/dir/file.png", b"x")
    assert not storage.exists("uploads/dir")
    with pytest.raises(ObjectNotFoundError):
        storage.get("uploads/dir")
    assert storage.delete("uploads/dir") is False
    assert storage.exists("uploads/dir/file.png")


# --- delete ----------------------------------------------------------------------------------


def test_delete(storage: Storage) -> None:
    storage.put("uploads/d/x.png", b"x")
    storage.put("uploads/d/y.png", b"y")

    assert storage.delete("uploads/d/x.png") is True
    assert storage.delete("uploads/d/x.png") is False

    assert not storage.exists("uploads/d/x.png")
    with pytest.raises(ObjectNotFoundError):
        storage.get("uploads/d/x.png")
    assert _keys(storage.list().objects) == ["uploads/d/y.png"]


def test_a_deleted_prefix_can_become_a_key(storage: Storage) -> None:
    storage.put("uploads/p/q.png", b"q")
    storage.delete("uploads/p/q.png")
    storage.put("uploads/p", b"p")
    assert storage.get("uploads/p") == b"p"


# --- open_range ------------------------------------------------------------------------------

RANGE_DATA = bytes(range(256)) * (3 * CHUNK_BYTES // 256) + b"end"


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (0, None),
        (0, 0),
        (10, 20),
        (len(RANGE_DATA) - 1, None),
        (len(RANGE_DATA) - 1, len(RANGE_DATA) - 1),
        (CHUNK_BYTES - 1, CHUNK_BYTES + 1),
        (5, 2 * CHUNK_BYTES + 7),
    ],
)
def test_open_range_slices(storage: Storage, start: int, end: int | None) -> None:
    storage.put("assets/r.bin", RANGE_DATA)
    chunks = list(storage.open_range("assets/r.bin", start, end))
    stop = len(RANGE_DATA) if end is None else end + 1
    assert b"".join(chunks) == RANGE_DATA[start:stop]
    assert all(0 < len(chunk) <= CHUNK_BYTES for chunk in chunks)


@pytest.mark.parametrize(
    ("start", "end"),
    [(-1, None), (-1, 3), (5, 4), (0, len(RANGE_DATA)), (len(RANGE_DATA), None)],
)
def test_open_range_outside_the_object(storage: Storage, start: int, end: int | None) -> None:
    storage.put("assets/r.bin", RANGE_DATA)
    with pytest.raises(RangeNotSatisfiableError):
        b"".join(storage.open_range("assets/r.bin", start, end))


def test_open_range_of_an_empty_object_beyond_its_end(storage: Storage) -> None:
    storage.put("assets/empty.bin", b"")
    with pytest.raises(RangeNotSatisfiableError):
        b"".join(storage.open_range("assets/empty.bin", 0, 0))


# --- list / iterate --------------------------------------------------------------------------


def test_list_is_in_the_backends_key_order(storage: Storage) -> None:
    _put_all(storage, ORDERED_KEYS)
    page = storage.list()
    assert _keys(page.objects) == in_listing_order(storage, ORDERED_KEYS)
    assert page.next_start_after is None
    assert sorted(ORDERED_KEYS, key=lambda key: key.encode()) == ORDERED_KEYS


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("uploads/", [key for key in ORDERED_KEYS if key.startswith("uploads/")]),
        ("uploads/a", ORDERED_KEYS[2:7]),
        ("uploads/a/", ["uploads/a/b.png", "uploads/a/c/d.png"]),
        ("uploads/a/c", ["uploads/a/c/d.png"]),
        ("uploads/ü", [UNICODE_KEY]),
        ("uploads", [key for key in ORDERED_KEYS if key.startswith("uploads/")]),
        ("assets/cutouts/x.png", ["assets/cutouts/x.png"]),
        ("missing/", []),
        ("uploads/zz", []),
    ],
)
def test_list_prefix(storage: Storage, prefix: str, expected: list[str]) -> None:
    _put_all(storage, ORDERED_KEYS)
    assert _keys(storage.list(prefix).objects) == in_listing_order(storage, expected)


def test_list_pages_with_limit_and_start_after(storage: Storage) -> None:
    _put_all(storage, ORDERED_KEYS)
    seen: list[str] = []
    start_after: str | None = None
    pages = 0
    while True:
        page = storage.list(start_after=start_after, limit=3)
        pages += 1
        assert len(page.objects) <= 3
        seen.extend(_keys(page.objects))
        if page.next_start_after is None:
            break
        assert page.next_start_after == page.objects[-1].key
        start_after = page.next_start_after
    assert seen == in_listing_order(storage, ORDERED_KEYS)
    assert pages == 4


def test_list_with_limit_equal_to_the_count_has_no_next_page(storage: Storage) -> None:
    _put_all(storage, ORDERED_KEYS[:3])
    page = storage.list(limit=3)
    assert _keys(page.objects) == in_listing_order(storage, ORDERED_KEYS[:3])
    assert page.next_start_after is None


@pytest.mark.parametrize(
    ("start_after", "expected"),
    [
        ("uploads/a.png", ORDERED_KEYS[4:]),
        ("uploads/a.", ORDERED_KEYS[3:]),  # not a key itself
        ("uploads/a/", ORDERED_KEYS[4:]),
        ("uploads/a/c/d.png", ORDERED_KEYS[6:]),
        ("uploads/日本.png", []),
        ("zzz", []),
        ("", ORDERED_KEYS),
    ],
)
def test_list_start_after(storage: Storage, start_after: str, expected: list[str]) -> None:
    _put_all(storage, ORDERED_KEYS)
    if listing_sort_key(storage) is not utf8_order:  # the expectations are in UTF-8 order
        after = listing_sort_key(storage)(start_after)
        expected = [key for key in ORDERED_KEYS if listing_sort_key(storage)(key) > after]
    assert _keys(storage.list(start_after=start_after).objects) == in_listing_order(
        storage, expected
    )


def test_list_prefix_and_start_after_together(storage: Storage) -> None:
    _put_all(storage, ORDERED_KEYS)
    page = storage.list("uploads/a", start_after="uploads/a.png", limit=1)
    after = listing_sort_key(storage)("uploads/a.png")
    remaining = in_listing_order(
        storage, [k for k in ORDERED_KEYS[2:7] if listing_sort_key(storage)(k) > after]
    )
    if listing_sort_key(storage) is utf8_order:
        assert remaining == ["uploads/a/b.png", "uploads/a/c/d.png", "uploads/a0.png"]
    assert _keys(page.objects) == remaining[:1]
    assert page.next_start_after == (remaining[0] if len(remaining) > 1 else None)


def test_list_returns_full_object_info(storage: Storage) -> None:
    storage.put("assets/i.png", b"info", metadata={"k": "v"})
    [info] = storage.list("assets/").objects
    assert info == storage.head("assets/i.png")


def test_iterate_pages_through_everything(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    _put_all(storage, ORDERED_KEYS)
    real_list = storage.list
    calls: list[str | None] = []

    def small_pages(prefix: str = "", *, start_after: str | None = None, limit: int = 2) -> object:
        calls.append(start_after)
        return real_list(prefix, start_after=start_after, limit=2)

    monkeypatch.setattr(storage, "list", small_pages)

    assert [info.key for info in storage.iterate()] == in_listing_order(storage, ORDERED_KEYS)
    assert len(calls) == 5
    assert [info.key for info in storage.iterate("uploads/a/")] == ORDERED_KEYS[4:6]


def test_list_rejects_invalid_prefix_and_limit(storage: Storage) -> None:
    for prefix in ("../", "/uploads", "uploads/../x", "a\x00"):
        with pytest.raises(InvalidKeyError):
            storage.list(prefix)
    with pytest.raises(ValueError, match="limit"):
        storage.list(limit=0)


# --- public URLs -----------------------------------------------------------------------------


def test_public_url_defaults_to_root_relative_file_routes(storage: Storage) -> None:
    assert storage.public_url("assets/a b.png") == "/assets/a%20b.png"
    assert storage.public_url(UNICODE_KEY) == (
        "/uploads/%C3%BCn%C3%AFc%C3%B6d%C3%A9/%E6%97%A5%E6%9C%AC.png"
    )


def test_public_url_uses_cdn_domain_then_base_url(storage_factory: StorageFactory) -> None:
    cdn = storage_factory(
        public_domain="https://assets.example.com", public_base_url="https://api.example.com"
    )
    assert cdn.public_url("assets/x?.png") == "https://assets.example.com/assets/x%3F.png"
    api = storage_factory(public_base_url="https://api.example.com")
    assert api.public_url("uploads/x.png") == "https://api.example.com/uploads/x.png"


# --- concurrency -----------------------------------------------------------------------------


def test_concurrent_writers_leave_a_consistent_object(storage: Storage) -> None:
    bodies = [bytes([n]) * (1000 + n) for n in range(8)]
    barrier = threading.Barrier(len(bodies))
    errors: list[BaseException] = []

    def writer(body: bytes) -> None:
        try:
            barrier.wait()
            for _ in range(5):
                storage.put("uploads/shared.bin", body)
                storage.put(f"uploads/own/{body[0]}.bin", body)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    data = storage.get("uploads/shared.bin")
    assert data in bodies
    head = storage.head("uploads/shared.bin")
    assert (head.size, head.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert len(storage.list("uploads/own/").objects) == len(bodies)


# --- key validation --------------------------------------------------------------------------

INVALID_KEYS = [
    "",
    "/uploads/a.png",
    "uploads//a.png",
    "uploads/./a.png",
    "uploads/../a.png",
    "../a.png",
    "uploads/..",
    "uploads/a.png/",
    "uploads\\a.png",
    "uploads/a\x00.png",
    "uploads/a\n.png",
    "uploads/a\x7f.png",
    "a" * (MAX_KEY_BYTES + 1),
    "uploads/" + "a" * (MAX_SEGMENT_BYTES + 1),
]


def _every_method_rejects(storage: Storage, key: str) -> None:
    calls: list[Callable[[], object]] = [
        lambda: storage.put(key, b"x"),
        lambda: storage.get(key),
        lambda: storage.head(key),
        lambda: storage.exists(key),
        lambda: storage.delete(key),
        lambda: b"".join(storage.open_range(key)),
        lambda: storage.public_url(key),
    ]
    for call in calls:
        with pytest.raises(InvalidKeyError):
            call()


@pytest.mark.parametrize("key", INVALID_KEYS)
def test_invalid_keys_are_rejected_by_every_method(storage: Storage, key: str) -> None:
    _every_method_rejects(storage, key)
    assert storage.list().objects == []


def test_longest_valid_segment_and_key(storage: Storage) -> None:
    segment = "é" * (MAX_SEGMENT_BYTES // 2)  # 254 bytes
    key = "/".join([segment] * 4) + "/" + "x" * (MAX_KEY_BYTES - 4 * 255)
    assert len(key.encode()) == MAX_KEY_BYTES
    storage.put(key, b"long")
    assert storage.get(key) == b"long"
    assert _keys(storage.list().objects) == [key]


_SEGMENT_CHARS = st.characters(codec="utf-8", exclude_characters="/\\\x00", min_codepoint=0x20)
_segment = st.text(_SEGMENT_CHARS, min_size=1, max_size=12).filter(lambda s: s not in (".", ".."))
_valid_keys = st.lists(_segment, min_size=1, max_size=4).map("/".join)


def _is_valid(key: str) -> bool:
    try:
        validate_key(key)
    except InvalidKeyError:
        return False
    return True


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(key=_valid_keys.filter(_is_valid), data=st.binary(max_size=64))
def test_any_valid_key_round_trips(storage: Storage, key: str, data: bytes) -> None:
    storage.put(key, data)
    try:
        assert storage.get(key) == data
        assert storage.head(key).sha256 == hashlib.sha256(data).hexdigest()
        assert _keys(storage.list(key).objects)[0] == key
    finally:
        assert storage.delete(key)
    assert storage.list().objects == []


@st.composite
def _keys_with_a_bad_part(draw: st.DrawFn) -> str:
    """A valid key spoiled by a ``..`` segment, a leading ``/`` or a NUL."""
    segments = draw(st.lists(_segment, min_size=1, max_size=4))
    kind = draw(st.sampled_from(["dotdot", "leading-slash", "nul"]))
    if kind == "dotdot":
        segments.insert(draw(st.integers(0, len(segments))), "..")
        return "/".join(segments)
    key = "/".join(segments)
    if kind == "leading-slash":
        return "/" + key
    position = draw(st.integers(0, len(key)))
    return key[:position] + "\x00" + key[position:]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(key=_keys_with_a_bad_part())
def test_any_dotdot_slash_or_nul_key_is_rejected(storage: Storage, key: str) -> None:
    _every_method_rejects(storage, key)


# --- cheap listing and one-request reads --------------------------------------------------------


def test_iterate_keys_lists_keys_and_sizes(storage: Storage) -> None:
    _put_all(storage, ORDERED_KEYS)
    entries = list(storage.iterate_keys())
    assert [entry.key for entry in entries] == in_listing_order(storage, ORDERED_KEYS)
    assert all(entry.size == len(entry.key.encode()) for entry in entries)
    assert [entry.key for entry in storage.iterate_keys("uploads/a/")] == ORDERED_KEYS[4:6]
    assert list(storage.iterate_keys("missing/")) == []


def test_open_object_gives_info_and_bytes(storage: Storage) -> None:
    data = bytes(range(256)) * (CHUNK_BYTES // 128)
    put = storage.put("assets/o.bin", data, content_type="image/png", metadata={"k": "v"})
    info, chunks = storage.open_object("assets/o.bin")
    assert b"".join(chunks) == data
    assert same_object(storage.head("assets/o.bin"), put)
    assert (info.size, info.content_type, info.metadata) == (len(data), "image/png", {"k": "v"})
    assert info.sha256 in ("", hashlib.sha256(data).hexdigest())
    storage.put("assets/empty.bin", b"")
    empty, empty_chunks = storage.open_object("assets/empty.bin")
    assert (empty.size, b"".join(empty_chunks)) == (0, b"")
    with pytest.raises(ObjectNotFoundError):
        storage.open_object("assets/missing.bin")
