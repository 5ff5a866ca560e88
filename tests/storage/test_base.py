"""Helpers every backend shares (storage/base.py)."""

from __future__ import annotations

import io

import pytest

from stolentee.errors import InvalidKeyError, RangeNotSatisfiableError
from stolentee.storage.base import (
    iter_chunks,
    public_url_for,
    resolve_content_type,
    resolve_range,
)


@pytest.mark.parametrize(
    ("domain", "base_url", "key", "expected"),
    [
        ("", "", "uploads/a.png", "/uploads/a.png"),
        ("", "https://api.example.com", "assets/a.png", "https://api.example.com/assets/a.png"),
        (
            "https://assets.example.com",
            "https://api.example.com",
            "assets/cutouts/ab.png",
            "https://assets.example.com/assets/cutouts/ab.png",
        ),
        (
            "https://cdn.example.com",
            "",
            "uploads/a b#?.png",
            "https://cdn.example.com/uploads/a%20b%23%3F.png",
        ),
        ("", "", "uploads/日本.png", "/uploads/%E6%97%A5%E6%9C%AC.png"),
        ("", "", "uploads/100%.png", "/uploads/100%25.png"),
    ],
)
def test_public_url_for(domain: str, base_url: str, key: str, expected: str) -> None:
    assert public_url_for(key, public_domain=domain, public_base_url=base_url) == expected


def test_public_url_for_validates_the_key() -> None:
    with pytest.raises(InvalidKeyError):
        public_url_for("../etc/passwd", public_domain="", public_base_url="")


@pytest.mark.parametrize(
    ("size", "start", "end", "expected"),
    [(10, 0, None, (0, 9)), (10, 3, 3, (3, 3)), (10, 9, None, (9, 9)), (0, 0, None, (0, -1))],
)
def test_resolve_range(size: int, start: int, end: int | None, expected: tuple[int, int]) -> None:
    assert resolve_range(size, start, end) == expected


@pytest.mark.parametrize(
    ("size", "start", "end"), [(10, -1, None), (10, 5, 4), (10, 0, 10), (10, 10, None), (0, 0, 0)]
)
def test_resolve_range_rejects(size: int, start: int, end: int | None) -> None:
    with pytest.raises(RangeNotSatisfiableError):
        resolve_range(size, start, end)


def test_iter_chunks_of_bytes_and_streams() -> None:
    data = bytes(range(256)) * 10
    assert [len(c) for c in iter_chunks(data, 1000)] == [1000, 1000, 560]
    assert b"".join(iter_chunks(io.BytesIO(data), 1000)) == data
    assert b"".join(iter_chunks(bytearray(data), 999)) == data
    assert list(iter_chunks(b"")) == []


@pytest.mark.parametrize(
    ("given", "expected"),
    [(None, "image/png"), ("", "image/png"), (" image/webp ", "image/webp")],
)
def test_resolve_content_type(given: str | None, expected: str) -> None:
    assert resolve_content_type("a/b.png", given) == expected


@pytest.mark.parametrize("bad", ["image/png\r\nX-Evil: 1", "text/\x00", "caf\u00e9/x", "x" * 256])
def test_resolve_content_type_rejects_header_breaking_values(bad: str) -> None:
    with pytest.raises(InvalidKeyError):
        resolve_content_type("a/b.png", bad)


def test_prefixes_of_valid_keys_are_accepted() -> None:
    from stolentee.errors import InvalidKeyError
    from stolentee.storage.base import validate_prefix

    for prefix in ("a/", "a/.", "uploads/2026", "a/b."):
        assert validate_prefix(prefix) == prefix
    for prefix in ("../", "a//", "/abs", "a/../"):
        with pytest.raises(InvalidKeyError):
            validate_prefix(prefix)
