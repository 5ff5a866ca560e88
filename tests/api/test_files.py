"""``GET``/``HEAD /uploads/*`` and ``/assets/*``: cache headers, validators, ranges, safety."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, MutableMapping
from datetime import timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from stolentee.api.app import create_app
from stolentee.config import Settings
from stolentee.storage.backends.local import LocalStorage
from stolentee.storage.base import ObjectInfo

BODY = bytes(range(256)) * 4  # 1024 bytes, every slice distinguishable
SIZE = len(BODY)
SECRET = b"TOP SECRET, outside the storage root"

UPLOAD_KEY = "uploads/2026/11/design.png"
ASSET_KEY = "assets/cutouts/abc123.png"

UPLOADS_HEADERS = {
    "cache-control": "public, max-age=86400, stale-while-revalidate=604800",
    "cdn-cache-control": "public, max-age=86400",
}
ASSETS_HEADERS = {
    "cache-control": "public, max-age=604800, immutable",
    "cdn-cache-control": "public, max-age=604800",
}
PREFIXES = [
    pytest.param(UPLOAD_KEY, UPLOADS_HEADERS, id="uploads"),
    pytest.param(ASSET_KEY, ASSETS_HEADERS, id="assets"),
]


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    """Local storage holding one upload, one asset and one private original."""
    storage = LocalStorage(root=tmp_path / "storage")
    storage.put(UPLOAD_KEY, BODY, content_type="image/png")
    storage.put(ASSET_KEY, BODY, content_type="image/png")
    storage.put("originals/private.png", SECRET, content_type="image/png")
    return storage


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_bytes(SECRET)
    return path


@pytest.fixture
def app(settings: Settings, storage: LocalStorage) -> FastAPI:
    return create_app(settings, storage=storage)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def _url(key: str) -> str:
    return "/" + key


def _http_date(info: ObjectInfo) -> str:
    return format_datetime(info.last_modified, usegmt=True)


def _validators(storage: LocalStorage, key: str) -> dict[str, str]:
    info = storage.head(key)
    return {"etag": f'"{hashlib.sha256(BODY).hexdigest()}"', "last-modified": _http_date(info)}


# --- 200 and its headers ---------------------------------------------------------------------


@pytest.mark.parametrize(("key", "cache_headers"), PREFIXES)
def test_get_sends_the_object_with_every_header(
    client: TestClient, storage: LocalStorage, key: str, cache_headers: dict[str, str]
) -> None:
    response = client.get(_url(key))

    assert response.status_code == 200
    assert response.content == BODY
    expected = {
        **cache_headers,
        **_validators(storage, key),
        "x-content-type-options": "nosniff",
        "vary": "Accept-Encoding",
        "content-type": "image/png",
        "accept-ranges": "bytes",
        "content-length": str(SIZE),
        "content-security-policy": "default-src 'none'; sandbox",
    }
    for name, value in expected.items():
        assert response.headers.get(name) == value, name
    assert "content-disposition" not in response.headers
    assert "content-range" not in response.headers


@pytest.mark.parametrize(("key", "cache_headers"), PREFIXES)
def test_head_sends_the_same_headers_and_no_body(
    client: TestClient, key: str, cache_headers: dict[str, str]
) -> None:
    get = client.get(_url(key))
    head = client.head(_url(key))

    assert head.status_code == 200
    assert head.content == b""
    assert dict(head.headers) == dict(get.headers)
    assert head.headers["cache-control"] == cache_headers["cache-control"]


@pytest.mark.parametrize(
    ("content_type", "attachment"),
    [
        ("image/png", False),
        ("image/webp", False),
        ("image/jpeg; quality=high", False),
        ("image/svg+xml", True),
        ("IMAGE/SVG+XML", True),
        ("text/html", True),
        ("application/javascript", True),
        ("application/octet-stream", True),
        ("application/pdf", True),
    ],
)
def test_only_non_svg_images_may_be_shown_inline(
    client: TestClient, storage: LocalStorage, content_type: str, attachment: bool
) -> None:
    storage.put("uploads/typed", b"<script>alert(1)</script>", content_type=content_type)

    response = client.get("/uploads/typed")

    assert response.headers["content-type"] == content_type  # stored value, no charset added
    assert response.headers.get("content-disposition") == ("attachment" if attachment else None)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"] == "default-src 'none'; sandbox"


def test_unicode_key(client: TestClient, storage: LocalStorage) -> None:
    storage.put("uploads/ünïcödé/日本.png", b"unicode")
    response = client.get("/uploads/%C3%BCn%C3%AFc%C3%B6d%C3%A9/%E6%97%A5%E6%9C%AC.png")
    assert response.status_code == 200
    assert response.content == b"unicode"
    assert client.get(storage.public_url("uploads/ünïcödé/日本.png")).content == b"unicode"


def test_large_object_is_streamed_whole(client: TestClient, storage: LocalStorage) -> None:
    data = hashlib.sha256(b"large").digest() * (3 * 1024 * 1024 // 32)
    storage.put("assets/large.bin", data)
    response = client.get("/assets/large.bin")
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(data))
    assert response.content == data


def test_empty_object(client: TestClient, storage: LocalStorage) -> None:
    storage.put("uploads/empty.png", b"")
    response = client.get("/uploads/empty.png")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == "0"


# --- 404 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/uploads/missing.png", "/assets/nope/x.png", "/uploads/"])
def test_missing_object_is_a_json_404(client: TestClient, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 404
    [error] = response.json()["errors"]
    assert error["code"] == "object_not_found"
    assert set(error) >= {"title", "code", "detail"}
    assert response.headers["cache-control"] == "no-store"  # a CDN keeps no copy of a 404


def test_head_of_missing_object_is_404(client: TestClient) -> None:
    response = client.head("/uploads/missing.png")
    assert response.status_code == 404
    assert response.content == b""
    assert response.headers["cache-control"] == "no-store"


def test_a_directory_is_not_an_object(client: TestClient) -> None:
    assert client.get("/uploads/2026/11").status_code == 404


# --- conditional requests: 304 ---------------------------------------------------------------


def _etag() -> str:
    return f'"{hashlib.sha256(BODY).hexdigest()}"'


@pytest.mark.parametrize(
    "if_none_match",
    [
        pytest.param("{etag}", id="exact"),
        pytest.param('"other", {etag}, "more"', id="list"),
        pytest.param('"a",{etag}', id="list-no-spaces"),
        pytest.param("*", id="star"),
        pytest.param("W/{etag}", id="weak"),
        pytest.param('W/"x", W/{etag}', id="weak-list"),
    ],
)
@pytest.mark.parametrize(("key", "cache_headers"), PREFIXES)
def test_if_none_match_gives_304(
    client: TestClient,
    storage: LocalStorage,
    key: str,
    cache_headers: dict[str, str],
    if_none_match: str,
) -> None:
    response = client.get(_url(key), headers={"If-None-Match": if_none_match.format(etag=_etag())})
    _assert_not_modified(response, storage, key, cache_headers)


def _assert_not_modified(
    response: Any, storage: LocalStorage, key: str, cache_headers: dict[str, str]
) -> None:
    assert response.status_code == 304
    assert response.content == b""
    expected = {**cache_headers, **_validators(storage, key), "vary": "Accept-Encoding"}
    for name, value in expected.items():
        assert response.headers.get(name) == value, name
    for name in ("content-type", "content-range", "content-disposition"):
        assert name not in response.headers


def test_head_with_if_none_match_gives_304(client: TestClient, storage: LocalStorage) -> None:
    response = client.head(_url(UPLOAD_KEY), headers={"If-None-Match": _etag()})
    _assert_not_modified(response, storage, UPLOAD_KEY, UPLOADS_HEADERS)


@pytest.mark.parametrize("if_none_match", ['"other"', 'W/"other"', '"a", "b"', "garbage", ""])
def test_if_none_match_mismatch_gives_200_even_with_if_modified_since(
    client: TestClient, storage: LocalStorage, if_none_match: str
) -> None:
    later = format_datetime(
        storage.head(UPLOAD_KEY).last_modified + timedelta(hours=1), usegmt=True
    )
    response = client.get(
        _url(UPLOAD_KEY), headers={"If-None-Match": if_none_match, "If-Modified-Since": later}
    )
    assert response.status_code == 200
    assert response.content == BODY


@pytest.mark.parametrize(("key", "cache_headers"), PREFIXES)
@pytest.mark.parametrize("offset_s", [0, 3600])
def test_if_modified_since_not_modified_gives_304(
    client: TestClient,
    storage: LocalStorage,
    key: str,
    cache_headers: dict[str, str],
    offset_s: int,
) -> None:
    since = storage.head(key).last_modified + timedelta(seconds=offset_s)
    response = client.get(
        _url(key), headers={"If-Modified-Since": format_datetime(since, usegmt=True)}
    )
    _assert_not_modified(response, storage, key, cache_headers)


@pytest.mark.parametrize("since", ["earlier", "not a date", "Sun, 06 Nov 1994 08:49:37 GMT"])
def test_if_modified_since_modified_or_invalid_gives_200(
    client: TestClient, storage: LocalStorage, since: str
) -> None:
    if since == "earlier":
        earlier = storage.head(UPLOAD_KEY).last_modified - timedelta(seconds=2)
        since = format_datetime(earlier, usegmt=True)
    response = client.get(_url(UPLOAD_KEY), headers={"If-Modified-Since": since})
    assert response.status_code == 200
    assert response.content == BODY


def test_an_overwritten_object_has_a_new_etag(client: TestClient, storage: LocalStorage) -> None:
    old_etag = client.get(_url(UPLOAD_KEY)).headers["etag"]
    storage.put(UPLOAD_KEY, b"new content", content_type="image/png")
    response = client.get(_url(UPLOAD_KEY), headers={"If-None-Match": old_etag})
    assert response.status_code == 200
    assert response.content == b"new content"
    assert response.headers["etag"] == f'"{hashlib.sha256(b"new content").hexdigest()}"'


# --- ranges: 206, 416, ignored ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("range_header", "start", "end"),
    [
        ("bytes=2-5", 2, 5),
        ("bytes=0-0", 0, 0),
        ("bytes=1000-", 1000, SIZE - 1),
        ("bytes=-7", SIZE - 7, SIZE - 1),
        ("bytes=-5000", 0, SIZE - 1),
        ("bytes=100-999999", 100, SIZE - 1),
        ("Bytes = 3-4", 3, 4),
    ],
)
@pytest.mark.parametrize(("key", "cache_headers"), PREFIXES)
def test_single_range_gives_206(
    client: TestClient,
    key: str,
    cache_headers: dict[str, str],
    range_header: str,
    start: int,
    end: int,
) -> None:
    response = client.get(_url(key), headers={"Range": range_header})

    assert response.status_code == 206
    assert response.content == BODY[start : end + 1]
    assert response.headers["content-range"] == f"bytes {start}-{end}/{SIZE}"
    assert response.headers["content-length"] == str(end - start + 1)
    assert response.headers["content-type"] == "image/png"
    assert response.headers["etag"] == _etag()
    assert response.headers["cache-control"] == cache_headers["cache-control"]
    assert response.headers["accept-ranges"] == "bytes"


def test_range_across_storage_chunks(client: TestClient, storage: LocalStorage) -> None:
    data = bytes(range(251)) * 5000  # ~1.2 MB, several 256 KiB chunks
    storage.put("assets/chunks.bin", data)
    response = client.get("/assets/chunks.bin", headers={"Range": "bytes=262000-790000"})
    assert response.status_code == 206
    assert response.content == data[262000:790001]


@pytest.mark.parametrize("range_header", ["bytes=1024-", "bytes=5000-6000", "bytes=-0"])
def test_unsatisfiable_range_gives_416(client: TestClient, range_header: str) -> None:
    response = client.get(_url(UPLOAD_KEY), headers={"Range": range_header})

    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{SIZE}"
    [error] = response.json()["errors"]
    assert error["code"] == "range_not_satisfiable"


@pytest.mark.parametrize(
    "range_header",
    [
        "bytes=0-1,4-5",
        "bytes=0-1, -3",
        "bytes=abc",
        "bytes=5-2",
        "bytes=-",
        "bytes=1-2-3",
        "bytes=+1-2",
        "bytes=1_0-20",
        "items=0-1",
        "bytes0-1",
        "",
    ],
)
def test_multiple_or_malformed_ranges_give_the_whole_object(
    client: TestClient, range_header: str
) -> None:
    response = client.get(_url(UPLOAD_KEY), headers={"Range": range_header})
    assert response.status_code == 200
    assert response.content == BODY
    assert "content-range" not in response.headers


def test_head_ignores_range(client: TestClient) -> None:
    response = client.head(_url(UPLOAD_KEY), headers={"Range": "bytes=0-9"})
    assert response.status_code == 200
    assert response.headers["content-length"] == str(SIZE)
    assert response.content == b""


@pytest.mark.parametrize(
    ("if_range", "partial"),
    [
        ("{etag}", True),
        ("{date}", True),
        ('"someone-elses-etag"', False),
        ("W/{etag}", False),  # If-Range needs a strong match
        ("Sun, 06 Nov 1994 08:49:37 GMT", False),
        ("not a date", False),
    ],
)
def test_if_range(client: TestClient, storage: LocalStorage, if_range: str, partial: bool) -> None:
    value = if_range.format(etag=_etag(), date=_http_date(storage.head(UPLOAD_KEY)))

    response = client.get(_url(UPLOAD_KEY), headers={"Range": "bytes=0-9", "If-Range": value})

    if partial:
        assert response.status_code == 206
        assert response.content == BODY[:10]
    else:
        assert response.status_code == 200
        assert response.content == BODY


def test_if_none_match_is_checked_before_range(client: TestClient) -> None:
    response = client.get(_url(UPLOAD_KEY), headers={"Range": "bytes=0-9", "If-None-Match": "*"})
    assert response.status_code == 304


# --- traversal and other escapes -------------------------------------------------------------

TRAVERSAL_URLS = [
    "/uploads/%2e%2e/%2e%2e/secret.txt",
    "/uploads/%2E%2E/originals/private.png",
    "/uploads/..%2f..%2fsecret.txt",
    "/uploads/%2e%2e%2foriginals%2fprivate.png",
    "/assets/%2e%2e/originals/private.png",
    "/uploads/a%5c..%5c..%5csecret.txt",
    "/uploads/..\\..\\secret.txt",
    "/uploads/design.png%00.txt",
    "/uploads/%00",
    "/uploads//etc/passwd",
    "/uploads/%2fetc%2fpasswd",
    "/uploads/%252e%252e/%252e%252e/secret.txt",
]


@pytest.mark.parametrize("url", TRAVERSAL_URLS)
def test_traversal_attempts_are_refused(client: TestClient, secret_file: Path, url: str) -> None:
    response = client.get(url)
    assert response.status_code in (400, 404), response.status_code
    assert SECRET not in response.content
    assert "errors" in response.json()


def _is_last_body(message: MutableMapping[str, Any]) -> bool:
    return message["type"] == "http.response.body" and not message.get("more_body", False)


def _raw_get(app: FastAPI, raw_path: bytes) -> tuple[int, bytes]:
    """Call the ASGI app with a path no HTTP client would send (dot segments kept as is)."""
    messages: list[MutableMapping[str, Any]] = []
    requests = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        if requests:
            return requests.pop()
        while not any(_is_last_body(message) for message in messages):
            await anyio.sleep(0.001)  # the client stays connected until the response is sent
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        messages.append(message)

    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": raw_path.decode("latin-1"),
        "raw_path": raw_path,
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    anyio.run(app, scope, receive, send)
    status = next(m["status"] for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return status, body


@pytest.mark.parametrize(
    "raw_path",
    [
        b"/uploads/../../secret.txt",
        b"/uploads/../originals/private.png",
        b"/assets/../../../secret.txt",
        b"/uploads/2026/../../../secret.txt",
        b"/assets/..\\..\\secret.txt",
        b"/uploads/a\x00b.png",
        b"/uploads/./2026/11/design.png",
    ],
)
def test_raw_dot_segments_are_refused(
    app: FastAPI, client: TestClient, secret_file: Path, raw_path: bytes
) -> None:
    status, body = _raw_get(app, raw_path)  # ``client`` ran the lifespan
    assert status in (400, 404)
    assert SECRET not in body


def test_raw_path_helper_serves_a_normal_path(app: FastAPI, client: TestClient) -> None:
    assert _raw_get(app, b"/uploads/2026/11/design.png") == (200, BODY)


def test_symlink_leaving_the_root_is_refused(
    client: TestClient, storage: LocalStorage, secret_file: Path
) -> None:
    link = storage.root / "objects" / "uploads" / "leak.txt"
    link.symlink_to(secret_file)

    for response in (client.get("/uploads/leak.txt"), client.head("/uploads/leak.txt")):
        assert response.status_code in (400, 404)
        assert SECRET not in response.content


def test_only_public_prefixes_are_served(client: TestClient) -> None:
    assert client.get("/originals/private.png").status_code == 404
    assert SECRET not in client.get("/originals/private.png").content


def test_other_methods_are_not_allowed(client: TestClient) -> None:
    assert client.post(_url(UPLOAD_KEY)).status_code == 405
    assert client.delete(_url(UPLOAD_KEY)).status_code == 405
