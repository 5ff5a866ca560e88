"""The signed S3 requests: signatures identical to botocore's, retries, errors, pooling.

Against SeaweedFS they run through the contract suite (the ``s3`` backend); here the signer is
checked against botocore's own SigV4 signer byte for byte, and the retry/error paths against a
small scripted HTTP server.
"""

from __future__ import annotations

import hashlib
import io
import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from stolentee.storage.s3 import store as s3
from stolentee.storage.s3.answers import object_headers, parse_listing
from stolentee.storage.s3.requests import (
    S3ConnectionError,
    S3Requests,
    S3ResponseError,
    S3StreamError,
)
from stolentee.storage.s3.signing import EMPTY_SHA256, S3Credentials, SigV4Signer, uri_encode
from tests.fakes.rawhttp import Answer, RawServer, ok, self_signed_certificate

CREDENTIALS = S3Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")


def _botocore_authorization(
    method: str, url: str, headers: dict[str, str], body: bytes
) -> tuple[str, str]:
    """botocore's Authorization and X-Amz-Date for the same request (it hashes ``body``)."""
    request = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
    signer = S3SigV4Auth(
        Credentials(CREDENTIALS.access_key_id, CREDENTIALS.secret_access_key), "s3", "auto"
    )
    signer.add_auth(request)
    return request.headers["Authorization"], request.headers["X-Amz-Date"]


@pytest.mark.parametrize(
    ("method", "key", "headers", "body"),
    [
        ("GET", "uploads/a.png", {}, b""),
        ("GET", "uploads/ü ñ/Ω+weird=&name (1).png", {"Range": "bytes=5-"}, b""),
        ("HEAD", "assets/cutouts/" + "a" * 64 + ".png", {}, b""),
        (
            "PUT",
            "assets/x~y_z.png",
            {
                "Content-Type": "image/png",
                "Cache-Control": "public, max-age=604800, immutable",
                "x-amz-meta-stolentee-sha256": "ab" * 32,
                "Content-Length": "3",
            },
            b"abc",
        ),
        (
            "PUT",
            "assets/copy of ü.png",
            {
                "x-amz-copy-source": "/src-bucket/"
                + uri_encode("assets/copy of ü.png", keep_slash=True),
                "x-amz-metadata-directive": "COPY",
            },
            b"",
        ),
    ],
)
def test_signatures_match_botocores(
    method: str, key: str, headers: dict[str, str], body: bytes
) -> None:
    requests = S3Requests(
        endpoint="http://127.0.0.1:8333",
        region="auto",
        credentials=CREDENTIALS,
        connect_timeout_s=1,
        read_timeout_s=1,
        max_attempts=1,
        max_connections=1,
    )
    path = requests.path("my-bucket", key)
    expected, amz_date = _botocore_authorization(
        method, f"http://127.0.0.1:8333{path}", headers, body
    )
    moment = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    signed = SigV4Signer(CREDENTIALS, region="auto").sign(
        method,
        path,
        {"host": "127.0.0.1:8333", **headers},
        payload_sha256=hashlib.sha256(body).hexdigest(),
        now=moment,
    )
    assert signed["Authorization"] == expected
    assert signed["x-amz-date"] == amz_date


def test_paths_are_encoded_once_with_slashes_kept() -> None:
    assert uri_encode("uploads/ü a+b~c", keep_slash=True) == "uploads/%C3%BC%20a%2Bb~c"
    assert uri_encode("a/b", keep_slash=False) == "a%2Fb"


def test_the_secret_is_not_in_the_repr() -> None:
    assert CREDENTIALS.secret_access_key not in repr(CREDENTIALS)


def test_object_headers_read_ranges_metadata_and_dates() -> None:
    parsed = object_headers(
        {
            "Content-Length": "10",
            "Content-Range": "bytes 5-14/100",
            "Content-Type": "image/png",
            "Last-Modified": "Sat, 28 Nov 2026 15:00:00 GMT",
            "x-amz-meta-stolentee-sha256": "ab" * 32,
            "X-Amz-Meta-Design": "d1",
            "ETag": '"abc"',
        }
    )
    assert (parsed.size, parsed.range_first, parsed.range_length) == (100, 5, 10)
    assert parsed.metadata == {"stolentee-sha256": "ab" * 32, "design": "d1"}
    assert parsed.last_modified == datetime(2026, 11, 28, 15, 0, tzinfo=UTC)
    assert parsed.etag == '"abc"'


# --- a scripted server for retries and errors ------------------------------------------------


class _Script:
    """Answers to give, in order (status, body, extra headers); the last one repeats."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, bytes, dict[str, str]]] = []
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.lock = threading.Lock()

    def next(self) -> tuple[int, bytes, dict[str, str]]:
        with self.lock:
            return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


@pytest.fixture
def scripted() -> Iterator[tuple[_Script, S3Requests]]:
    script = _Script()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length", "0") or 0)
            if length:
                self.rfile.read(length)
            with script.lock:
                script.requests.append((self.command, self.path, dict(self.headers)))
            status, body, extra = script.next()
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_PUT = do_HEAD = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    requests = S3Requests(
        endpoint=f"http://127.0.0.1:{server.server_address[1]}",
        region="us-east-1",
        credentials=CREDENTIALS,
        connect_timeout_s=1,
        read_timeout_s=2,
        max_attempts=3,
        max_connections=2,
    )
    yield script, requests
    requests.close()
    server.shutdown()
    server.server_close()


def _error(code: str, message: str = "") -> bytes:
    return f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()


def test_throttling_and_5xx_are_retried_then_succeed(
    scripted: tuple[_Script, S3Requests],
) -> None:
    script, requests = scripted
    script.answers = [
        (503, _error("SlowDown", "reduce your rate"), {}),
        (500, _error("InternalError"), {}),
        (200, b"hello", {"Content-Type": "text/plain"}),
    ]
    answer = requests.get("b", "k.txt")
    assert answer.read() == b"hello"
    answer.release_conn()
    assert [method for method, _, _ in script.requests] == ["GET", "GET", "GET"]


def test_retries_stop_at_max_attempts_with_the_services_error(
    scripted: tuple[_Script, S3Requests],
) -> None:
    script, requests = scripted
    script.answers = [(503, _error("SlowDown", "reduce your rate"), {})]
    with pytest.raises(S3ResponseError) as caught:
        requests.get("b", "k.txt")
    assert (caught.value.status, caught.value.code, caught.value.message) == (
        503,
        "SlowDown",
        "reduce your rate",
    )
    assert len(script.requests) == 3


def test_client_errors_are_not_retried(scripted: tuple[_Script, S3Requests]) -> None:
    script, requests = scripted
    script.answers = [(403, _error("SignatureDoesNotMatch", "bad"), {})]
    with pytest.raises(S3ResponseError, match="SignatureDoesNotMatch"):
        requests.put("b", "k.txt", b"abc", size=3, sha256=EMPTY_SHA256, headers={})
    script.answers = [(404, b"", {})]
    with pytest.raises(S3ResponseError) as caught:
        requests.head("b", "missing.txt")
    assert (caught.value.status, caught.value.code) == (404, "NotFound")
    assert len(script.requests) == 2


def test_a_copy_answered_200_with_an_error_body_is_an_error(
    scripted: tuple[_Script, S3Requests],
) -> None:
    script, requests = scripted
    script.answers = [(200, _error("InternalError", "copy failed half way"), {})]
    with pytest.raises(S3ResponseError, match="copy failed half way"):
        requests.copy("b", "k.txt", source_bucket="a", source_key="k.txt")
    assert len(script.requests) == 3  # retried like a 500
    script.answers = [
        (200, b"<CopyObjectResult><ETag>&quot;e1&quot;</ETag></CopyObjectResult>", {})
    ]
    assert requests.copy("b", "k.txt", source_bucket="a", source_key="k.txt") == '"e1"'
    _, _, headers = script.requests[-1]
    assert headers["x-amz-copy-source"] == "/a/k.txt"


def test_a_put_body_is_rewound_for_each_attempt(scripted: tuple[_Script, S3Requests]) -> None:
    script, requests = scripted
    script.answers = [(500, _error("InternalError"), {}), (200, b"", {"ETag": '"x"'})]
    body = io.BytesIO(b"0123456789")
    body.seek(2)
    assert requests.put("b", "k", body, size=8, sha256=EMPTY_SHA256, headers={}) == '"x"'
    assert [headers["Content-Length"] for _, _, headers in script.requests] == ["8", "8"]


def test_an_unreachable_endpoint_fails_after_the_attempts() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    requests = S3Requests(
        endpoint=f"http://127.0.0.1:{port}",
        region="us-east-1",
        credentials=CREDENTIALS,
        connect_timeout_s=0.5,
        read_timeout_s=0.5,
        max_attempts=2,
        max_connections=1,
    )
    with pytest.raises(S3ConnectionError):
        requests.head("b", "k")


def test_listings_decode_url_encoded_keys() -> None:
    page = parse_listing(
        b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<IsTruncated>true</IsTruncated><NextContinuationToken>t1</NextContinuationToken>"
        b"<Contents><Key>a/sp+ace%2Bplus%C3%BC.bin</Key><ETag>&#34;e1&#34;</ETag>"
        b"<Size>12</Size></Contents><EncodingType>url</EncodingType></ListBucketResult>"
    )
    assert [(o.key, o.size, o.etag) for o in page.objects] == [("a/sp ace+plusü.bin", 12, "e1")]
    assert page.next_token == "t1"
    last = parse_listing(b"<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>")
    assert (last.objects, last.next_token) == ([], None)


# --- on the lean HTTP client (stolentee.storage.s3.http_wire) -------------------------------------


def _requests_on(port: int, *, scheme: str = "http", **options: Any) -> S3Requests:
    settings: dict[str, Any] = {
        "region": "us-east-1",
        "credentials": CREDENTIALS,
        "connect_timeout_s": 1,
        "read_timeout_s": 2,
        "max_attempts": 1,
        "max_connections": 2,
    }
    settings.update(options)
    return S3Requests(endpoint=f"{scheme}://127.0.0.1:{port}", **settings)


def test_a_stale_pooled_connection_is_not_an_attempt() -> None:
    """The server drops a kept-alive connection as the next request arrives: sent again on a
    fresh one, even with a single attempt allowed, and observed once, as a success."""
    server = RawServer(script=[ok(b"", 'ETag: "a"'), Answer(drop=True), ok(b"", 'ETag: "b"')])
    requests = _requests_on(server.port, max_attempts=1)
    seen: list[tuple[str, str]] = []
    requests.observers.append(lambda operation, outcome: seen.append((operation, outcome)))
    try:
        assert requests.put("b", "k1", b"x", size=1, sha256=EMPTY_SHA256, headers={}) == '"a"'
        body = io.BytesIO(b"yz")
        assert requests.put("b", "k2", body, size=2, sha256=EMPTY_SHA256, headers={}) == '"b"'
        assert [(r.connection, r.line, r.body) for r in server.received] == [
            (0, "PUT /b/k1 HTTP/1.1", b"x"),
            (0, "PUT /b/k2 HTTP/1.1", b"yz"),
            (1, "PUT /b/k2 HTTP/1.1", b"yz"),
        ]
        assert seen == [("PutObject", "ok"), ("PutObject", "ok")]
    finally:
        requests.close()
        server.close()


def test_a_broken_get_body_raises_what_the_storage_resumes_on() -> None:
    """S3Storage resumes an interrupted read on S3StreamError (one of s3._STREAM_ERRORS)."""
    server = RawServer(
        script=[
            Answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123", close_after=True),
            Answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123"),
        ]
    )
    requests = _requests_on(server.port, read_timeout_s=0.2)
    try:
        answer = requests.get("b", "k")
        assert answer.status == 200 and answer.headers["Content-Length"] == "10"
        assert answer.length_remaining == 10
        with pytest.raises(S3StreamError) as caught:
            answer.read(10)
        assert not caught.value.timed_out
        assert S3StreamError in s3._STREAM_ERRORS
        answer.release_conn()
        stalled = requests.get("b", "k")
        with pytest.raises(S3StreamError, match=r"no data for 0\.2 s") as caught:
            stalled.read(10)
        assert caught.value.timed_out
        stalled.close()
    finally:
        requests.close()
        server.close()


def test_connection_errors_say_whether_they_timed_out() -> None:
    server = RawServer(script=[Answer(hang=True)])
    requests = _requests_on(server.port, read_timeout_s=0.2, max_attempts=2)
    seen: list[str] = []
    requests.observers.append(lambda _, outcome: seen.append(outcome))
    try:
        with pytest.raises(S3ConnectionError, match="did not answer") as caught:
            requests.head("b", "k")
        assert caught.value.timed_out
        assert len(server.received) == 2  # both attempts made
        assert seen == ["connection_error"]
    finally:
        requests.close()
        server.close()


def test_https_endpoints_verify_certificates_unless_told_what_to_trust(tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path, "IP:127.0.0.1")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    head = b'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: "e"\r\n\r\n'
    server = RawServer(script=[Answer(head)], tls=context)
    default = _requests_on(server.port, scheme="https", max_attempts=2)
    trusting = ssl.create_default_context(cafile=str(cert))
    trusted = _requests_on(server.port, scheme="https", ssl_context=trusting)
    try:
        with pytest.raises(S3ConnectionError, match="CERTIFICATE_VERIFY_FAILED") as caught:
            default.head("b", "k")
        assert not caught.value.timed_out
        assert not server.received
        assert (trusted.head("b", "k").size, trusted.head("b", "k").etag) == (5, '"e"')
        lines = server.received[0].head.split(b"\r\n")[1:]
        assert f"host: 127.0.0.1:{server.port}".encode() in lines  # as signed
        assert server.connections == 3  # two refused handshakes (two attempts), one kept alive
    finally:
        default.close()
        trusted.close()
        server.close()
