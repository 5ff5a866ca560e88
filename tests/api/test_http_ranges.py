"""The pure HTTP rules behind the file routes (api/http_ranges.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stolentee.api.http_ranges import (
    ByteRange,
    http_date,
    if_none_match_matches,
    if_range_allows,
    is_not_modified,
    object_headers,
    parse_entity_tags,
    parse_http_date,
    parse_range,
    partial_headers,
    validator_headers,
)
from stolentee.errors import RangeNotSatisfiableError
from stolentee.storage.base import ObjectInfo
from stolentee.storage.cache_policy import ASSETS_CACHE, UPLOADS_CACHE

MODIFIED = datetime(2026, 11, 28, 10, 0, 0, 750_000, tzinfo=UTC)  # sub-second mtime
INFO = ObjectInfo(
    key="uploads/x.png",
    size=100,
    content_type="image/png",
    sha256="ab" * 32,
    last_modified=MODIFIED,
)
ETAG = INFO.etag


# --- Range -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-9", (0, 9)),
        ("bytes=90-", (90, 99)),
        ("bytes=-10", (90, 99)),
        ("bytes=-1000", (0, 99)),
        ("bytes=50-5000", (50, 99)),
        ("bytes=99-99", (99, 99)),
        (" BYTES = 1-2 ", (1, 2)),
    ],
)
def test_parse_range_single(header: str, expected: tuple[int, int]) -> None:
    byte_range = parse_range(header, 100)
    assert byte_range == ByteRange(start=expected[0], end=expected[1], size=100)
    assert byte_range.length == expected[1] - expected[0] + 1
    assert byte_range.content_range == f"bytes {expected[0]}-{expected[1]}/100"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "bytes=",
        "bytes=-",
        "bytes=a-b",
        "bytes=5-1",
        "bytes=0-1,2-3",
        "bytes=1-2,",
        "pages=1-2",
        "bytes 1-2",
        "bytes=1-2-3",
        "bytes=+1-2",
        "bytes=1 -2",
        "bytes=٣-٤",
    ],
)
def test_parse_range_ignores_malformed_or_multiple(header: str | None) -> None:
    assert parse_range(header, 100) is None


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=100-", 100),
        ("bytes=100-200", 100),
        ("bytes=-0", 100),
        ("bytes=0-", 0),
        ("bytes=-5", 0),
    ],
)
def test_parse_range_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiableError):
        parse_range(header, size)


@given(size=st.integers(0, 10_000), header=st.text(max_size=30))
def test_parse_range_never_returns_a_range_outside_the_object(size: int, header: str) -> None:
    try:
        byte_range = parse_range("bytes=" + header, size)
    except RangeNotSatisfiableError:
        return
    if byte_range is not None:
        assert 0 <= byte_range.start <= byte_range.end < size


# --- entity tags and dates -------------------------------------------------------------------


def test_parse_entity_tags() -> None:
    assert parse_entity_tags('"a", W/"b",  "c,d"') == [(False, "a"), (True, "b"), (False, "c,d")]
    assert parse_entity_tags("") == []
    assert parse_entity_tags('"a" "b"') is None
    assert parse_entity_tags("a") is None
    assert parse_entity_tags('w/"a"') is None


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        (ETAG, True),
        (f"W/{ETAG}", True),
        (f'"x", {ETAG}', True),
        ("*", True),
        (" * ", True),
        ('"x"', False),
        (ETAG.strip('"'), False),  # unquoted: malformed
        (f"{ETAG}, garbage", False),
        ("", False),
    ],
)
def test_if_none_match_matches(header: str, matches: bool) -> None:
    assert if_none_match_matches(header, ETAG) is matches


@pytest.mark.parametrize(
    "value",
    [
        "Sat, 28 Nov 2026 10:00:00 GMT",
        "Saturday, 28-Nov-26 10:00:00 GMT",
        "Sat Nov 28 10:00:00 2026",
    ],
)
def test_parse_http_date_accepts_the_three_formats(value: str) -> None:
    assert parse_http_date(value) == datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("value", ["", "yesterday", "Sat, 99 Nov 2026 10:00:00 GMT"])
def test_parse_http_date_rejects_garbage(value: str) -> None:
    assert parse_http_date(value) is None


def test_http_date() -> None:
    assert http_date(MODIFIED) == "Sat, 28 Nov 2026 10:00:00 GMT"


# --- conditional requests --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "not_modified"),
    [
        ({}, False),
        ({"if-none-match": ETAG}, True),
        ({"if-none-match": '"other"'}, False),
        ({"if-none-match": '"other"', "if-modified-since": "Sat, 28 Nov 2026 11:00:00 GMT"}, False),
        ({"if-modified-since": "Sat, 28 Nov 2026 10:00:00 GMT"}, True),  # same second
        ({"if-modified-since": "Sat, 28 Nov 2026 09:59:59 GMT"}, False),
        ({"if-modified-since": "Sun, 29 Nov 2026 10:00:00 GMT"}, True),
        ({"if-modified-since": "garbage"}, False),
    ],
)
def test_is_not_modified(headers: dict[str, str], not_modified: bool) -> None:
    assert is_not_modified(headers, INFO) is not_modified


@pytest.mark.parametrize(
    ("header", "allowed"),
    [
        (None, True),
        (ETAG, True),
        (f"W/{ETAG}", False),
        ('"other"', False),
        (f"{ETAG}, {ETAG}", False),
        ("Sat, 28 Nov 2026 10:00:00 GMT", True),
        ("Sat, 28 Nov 2026 10:00:01 GMT", False),
        ("garbage", False),
    ],
)
def test_if_range_allows(header: str | None, allowed: bool) -> None:
    assert if_range_allows(header, INFO) is allowed


# --- headers ---------------------------------------------------------------------------------


def test_object_and_partial_headers() -> None:
    headers = object_headers(INFO, ASSETS_CACHE)
    assert headers == {
        "ETag": ETAG,
        "Last-Modified": "Sat, 28 Nov 2026 10:00:00 GMT",
        "Cache-Control": "public, max-age=604800, immutable",
        "CDN-Cache-Control": "public, max-age=604800",
        "Vary": "Accept-Encoding",
        "Content-Type": "image/png",
        "Content-Length": "100",
        "Accept-Ranges": "bytes",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }
    partial = partial_headers(INFO, ASSETS_CACHE, ByteRange(start=10, end=19, size=100))
    assert partial["Content-Length"] == "10"
    assert partial["Content-Range"] == "bytes 10-19/100"


def test_validator_headers() -> None:
    assert validator_headers(INFO, UPLOADS_CACHE) == {
        "ETag": ETAG,
        "Last-Modified": "Sat, 28 Nov 2026 10:00:00 GMT",
        "Cache-Control": "public, max-age=86400, stale-while-revalidate=604800",
        "CDN-Cache-Control": "public, max-age=86400",
        "Vary": "Accept-Encoding",
    }
