"""The lean HTTP/1.1 client of the signed S3 requests, against a scripted loopback server:
framing (Content-Length, chunked, read-to-close, no body), keep-alive reuse and its limits,
stale pooled connections, timeouts, malformed answers, TLS."""

from __future__ import annotations

import io
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stolentee.storage.s3 import http_response, http_wire
from stolentee.storage.s3.http_errors import (
    ConnectError,
    ConnectTimeout,
    PoolClosedError,
    ProtocolError,
    ReadTimeout,
)
from stolentee.storage.s3.http_wire import ConnectionPool
from tests.fakes.rawhttp import Answer, RawServer, ok, self_signed_certificate


@pytest.fixture
def server() -> Iterator[RawServer]:
    raw = RawServer()
    yield raw
    raw.close()


def _pool(server: RawServer, **options: object) -> ConnectionPool:
    settings: dict[str, object] = {"connect_timeout_s": 2, "read_timeout_s": 5, "max_idle": 4}
    settings.update(options)
    return ConnectionPool("127.0.0.1", server.port, **settings)  # type: ignore[arg-type]


# --- framing and reuse ---------------------------------------------------------------------------


def test_content_length_bodies_on_one_kept_alive_connection(server: RawServer) -> None:
    server.script = [
        ok(b"first", "Content-Type: text/plain", "X-Amz-Meta-A: 1", "x-amz-meta-a: 2"),
        ok(b"second body"),
    ]
    pool = _pool(server)
    first = pool.request("GET", "/b/k?x=1", {"User-Agent": "t"})
    assert (first.status, first.reason, first.version) == (200, "OK", 11)
    assert first.data == b"first"
    assert first.headers["content-type"] == first.headers["Content-Type"] == "text/plain"
    assert first.headers.get("X-AMZ-META-A") == "1, 2"  # repeated: joined, as http.client did
    assert "CONTENT-LENGTH" in first.headers and "etag" not in first.headers
    second = pool.request("GET", "/b/k2", {}, preload=False)
    assert second.length_remaining == 11
    assert second.read(6) == b"second"
    assert second.length_remaining == 5
    assert second.read() == b" body"
    assert second.length_remaining == 0 and second.read(10) == b""
    assert server.connections == 1 and pool.num_connections == 1 and pool.num_idle == 1
    head = server.received[0].head.decode()
    assert head.startswith("GET /b/k?x=1 HTTP/1.1\r\n")
    assert f"\r\nHost: 127.0.0.1:{server.port}\r\n" in head
    assert "\r\nAccept-Encoding: identity\r\n" in head  # never a compressed body
    assert "\r\nUser-Agent: t\r\n" in head


S3_HEAD = (
    b"HTTP/1.1 206 Partial Content\r\n"
    b"Accept-Ranges: bytes\r\n"
    b"Cache-Control: public, max-age=604800, immutable\r\n"
    b"Content-Length: 4\r\n"
    b"Content-Range: bytes 2-5/10\r\n"
    b"Content-Type: image/png\r\n"
    b'ETag: "0123456789abcdef"\r\n'
    b"Last-Modified: Sat, 28 Nov 2026 15:00:00 GMT\r\n"
    b"Server: SeaweedFS 4.00\r\n"
    b"X-Amz-Meta-Stolentee-Sha256: " + b"ab" * 32 + b"\r\n"
    b"x-amz-meta-note:   caf\xe9  spaced \t\r\n"
    b"X-Amz-Request-Id: 1764342000000000000\r\n"
    b"Date: Sat, 28 Nov 2026 15:00:01 GMT\r\n"
    b"\r\n"
)


@pytest.mark.parametrize("buffer_bytes", [1, 65536], ids=["line-by-line", "whole-head"])
def test_headers_read_line_by_line_or_whole_are_the_same(
    server: RawServer, monkeypatch: pytest.MonkeyPatch, buffer_bytes: int
) -> None:
    """The head is parsed at once when it arrived whole, line by line when it did not."""
    monkeypatch.setattr(http_response, "_READ_BUFFER", buffer_bytes)
    server.script = [Answer(S3_HEAD + b"2345")]
    answer = _pool(server).request("GET", "/k", {"Range": "bytes=2-5"})
    assert (answer.status, answer.reason, answer.data) == (206, "Partial Content", b"2345")
    assert dict(answer.headers.items()) == {
        "accept-ranges": "bytes",
        "cache-control": "public, max-age=604800, immutable",
        "content-length": "4",
        "content-range": "bytes 2-5/10",
        "content-type": "image/png",
        "etag": '"0123456789abcdef"',
        "last-modified": "Sat, 28 Nov 2026 15:00:00 GMT",
        "server": "SeaweedFS 4.00",
        "x-amz-meta-stolentee-sha256": "ab" * 32,
        "x-amz-meta-note": "caf\xe9  spaced",  # ISO-8859-1, as http.client decoded it
        "x-amz-request-id": "1764342000000000000",
        "date": "Sat, 28 Nov 2026 15:00:01 GMT",
    }


def test_chunked_bodies_read_in_pieces_across_split_reads(
    server: RawServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every line and chunk arrives split (a one-byte read buffer, the answer sent in small
    writes); extensions and trailers are skipped; the connection is reused afterwards."""
    monkeypatch.setattr(http_response, "_READ_BUFFER", 1)
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: a/b\r\n\r\n"
        b"5;name=value\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n"
        b"0\r\nX-Trailer: yes\r\n\r\n"
    )
    server.script = [Answer(chunked, pieces=17), ok(b"after")]
    pool = _pool(server)
    answer = pool.request("GET", "/c", {}, preload=False)
    assert answer.headers["content-type"] == "a/b"
    pieces = []
    while piece := answer.read(4):
        assert answer.length_remaining in (None, 0)
        pieces.append(piece)
    assert pieces == [b"hell", b"o 01", b"2345", b"6789"]
    assert answer.length_remaining == 0
    assert pool.request("GET", "/d", {}).data == b"after"
    assert server.connections == 1


def test_a_chunked_body_read_whole(server: RawServer) -> None:
    server.script = [
        Answer(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            b"3\r\nabc\r\n00003\r\ndef\r\n0\r\n\r\n"
        ),
        ok(b"next"),
    ]
    pool = _pool(server)
    assert pool.request("GET", "/", {}).data == b"abcdef"  # codings other than chunked: as sent
    assert pool.request("GET", "/", {}).data == b"next"
    assert server.connections == 1


def test_head_204_304_and_interim_answers_have_no_body(server: RawServer) -> None:
    """A HEAD's Content-Length (and a 304's) describes a body that is not sent: reading one
    would swallow the next answer or wait for bytes that never come."""
    server.script = [
        Answer(b'HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nETag: "e"\r\n\r\n'),
        Answer(b"HTTP/1.1 204 No Content\r\n\r\n"),
        Answer(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"),
        Answer(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"),
        ok(b"last"),
    ]
    pool = _pool(server)
    head = pool.request("HEAD", "/h", {})
    assert (head.status, head.headers["content-length"], head.data) == (200, "1234", b"")
    assert head.length_remaining == 0
    assert pool.request("GET", "/204", {}).data == b""
    not_modified = pool.request("GET", "/304", {"If-None-Match": '"e"'})
    assert (not_modified.status, not_modified.data) == (304, b"")
    created = pool.request("PUT", "/put", {}, body=b"xyz")
    assert (created.status, created.data) == (201, b"ok")
    assert pool.request("GET", "/last", {}).data == b"last"
    assert server.connections == 1  # each answer ended where the next began
    assert server.received[3].body == b"xyz"


def test_connection_close_and_http_1_0_are_not_reused(server: RawServer) -> None:
    server.script = [
        ok(b"closing", "Connection: close"),
        Answer(b"HTTP/1.0 200 OK\r\nContent-Type: x/y\r\n\r\nto the end", close_after=True),
        Answer(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 4\r\n\r\nkept"),
        ok(b"again"),
    ]
    pool = _pool(server)
    assert pool.request("GET", "/1", {}).data == b"closing"
    streamed = pool.request("GET", "/2", {}, preload=False)
    assert streamed.version == 10 and streamed.length_remaining is None
    assert streamed.read() == b"to the end"  # no length: the body ends when the server closes
    assert streamed.length_remaining == 0
    assert pool.request("GET", "/3", {}).data == b"kept"
    assert pool.request("GET", "/4", {}).data == b"again"
    assert [request.connection for request in server.received] == [0, 1, 2, 2]


def test_an_abandoned_body_drops_its_connection(server: RawServer) -> None:
    server.script = [ok(b"x" * 100_000), ok(b"fresh")]
    pool = _pool(server)
    answer = pool.request("GET", "/big", {}, preload=False)
    assert answer.read(10) == b"x" * 10
    answer.release_conn()  # the rest of the body is still on the way: not reusable
    assert answer.read(10) == b""
    assert pool.num_idle == 0
    assert pool.request("GET", "/next", {}).data == b"fresh"
    assert [request.connection for request in server.received] == [0, 1]


def test_requests_carry_their_bodies_and_lengths(server: RawServer) -> None:
    server.script = [ok(b"")]
    pool = _pool(server)
    pool.request("PUT", "/copy", {"x-amz-copy-source": "/a/b"})
    pool.request("PUT", "/bytes", {"Content-Type": "a/b"}, body=b"0123")
    stream = io.BytesIO(b"..abcdefgh..")
    stream.seek(2)
    pool.request("PUT", "/stream", {"Content-Length": "8"}, body=stream)
    big = bytes(range(256)) * 8192  # 2 MiB: head and body leave in separate writes
    pool.request("PUT", "/big", {}, body=big)
    pool.request("GET", "/get", {})
    copy, put, streamed, large, get = server.received
    assert b"\r\nContent-Length: 0\r\n" in copy.head and copy.body == b""
    assert b"\r\nContent-Length: 4\r\n" in put.head and put.body == b"0123"
    assert streamed.body == b"abcdefgh" and stream.tell() == 10
    assert large.body == big
    assert b"Content-Length" not in get.head
    assert server.connections == 1


@pytest.mark.parametrize(
    ("headers", "body", "message"),
    [
        ({"X-Evil": "a\r\nX-Injected: 1"}, None, "CR or LF"),
        ({"X-Evil\r\nX": "a"}, None, "CR or LF"),
        ({}, io.BytesIO(b"abc"), "needs a Content-Length"),
        ({"Content-Length": "5"}, b"abc", "3-byte body"),
    ],
)
def test_bad_requests_are_refused(
    server: RawServer, headers: dict[str, str], body: bytes | io.BytesIO | None, message: str
) -> None:
    server.script = [ok(b"")]
    pool = _pool(server)
    with pytest.raises(ValueError, match=message):
        pool.request("PUT", "/k", headers, body=body)
    with pytest.raises(ValueError, match="request line"):
        pool.request("GET", "/a b", {})
    assert not server.received


def test_a_stream_shorter_than_its_length_drops_the_connection(server: RawServer) -> None:
    server.script = [ok(b"")]
    pool = _pool(server)
    with pytest.raises(ValueError, match="2 bytes short of its Content-Length"):
        pool.request("PUT", "/k", {"Content-Length": "5"}, body=io.BytesIO(b"abc"))
    assert pool.num_idle == 0  # the server still waits for 2 bytes on that one


# --- connections closed by the server ------------------------------------------------------------


class _OneWayStream(io.RawIOBase):
    """A body that cannot be rewound (so a request with it cannot be sent twice)."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._data.readinto(buffer)


def test_a_connection_the_server_closed_while_idle_is_not_used(server: RawServer) -> None:
    """Noticed before the request is written: even a body that cannot be sent twice goes."""
    server.script = [Answer(ok(b"one").data, close_after=True), ok(b"two")]
    pool = _pool(server)
    assert pool.request("GET", "/1", {}).data == b"one"
    assert server.closed.wait(5)
    body = io.BufferedReader(_OneWayStream(b"abc"))
    assert not body.seekable()
    assert pool.request("PUT", "/2", {"Content-Length": "3"}, body=body).data == b"two"
    assert [(r.connection, r.body) for r in server.received] == [(0, b""), (1, b"abc")]


def test_a_stale_connection_is_retried_once_on_a_fresh_one(server: RawServer) -> None:
    """The server closes a kept-alive connection as the next request arrives (its idle
    timeout, racing the request): sent again, once, on a new connection, body rewound."""
    server.script = [ok(b"one"), Answer(drop=True), ok(b"two")]
    pool = _pool(server)
    assert pool.request("GET", "/1", {}).data == b"one"
    body = io.BytesIO(b"payload")
    answer = pool.request("PUT", "/2", {"Content-Length": "7"}, body=body)
    assert answer.data == b"two"
    assert [(r.connection, r.line, r.body) for r in server.received] == [
        (0, "GET /1 HTTP/1.1", b""),
        (0, "PUT /2 HTTP/1.1", b"payload"),
        (1, "PUT /2 HTTP/1.1", b"payload"),
    ]


def test_an_answer_before_the_whole_body_was_taken_is_read(server: RawServer) -> None:
    """The server refuses a large upload from its head, answers and closes without reading the
    body: sending fails half way, yet its answer is what the caller gets (not a broken pipe)."""
    refusal = b"<Error><Code>AccessDenied</Code></Error>"
    server.script = [ok(refusal, "Connection: close", status="403 Forbidden")]
    server.script[0].early = True
    pool = _pool(server)
    answer = pool.request("PUT", "/big", {}, body=b"x" * (32 * 1024 * 1024))
    assert (answer.status, answer.data) == (403, refusal)
    assert len(server.received) == 1 and pool.num_idle == 0


def test_a_fresh_connection_closed_without_an_answer_is_an_error(server: RawServer) -> None:
    server.script = [Answer(drop=True)]
    pool = _pool(server)
    with pytest.raises(ProtocolError, match="closed the connection without answering"):
        pool.request("GET", "/1", {})
    assert len(server.received) == 1  # not retried: nothing was stale


def test_the_stale_retry_happens_once(server: RawServer) -> None:
    server.script = [ok(b"one"), Answer(drop=True)]
    pool = _pool(server)
    assert pool.request("GET", "/1", {}).data == b"one"
    with pytest.raises(ProtocolError, match="without answering"):
        pool.request("GET", "/2", {})
    assert [request.connection for request in server.received] == [0, 0, 1]


# --- timeouts and refusals -----------------------------------------------------------------------


def test_an_answer_that_never_comes_times_out(server: RawServer) -> None:
    server.script = [Answer(hang=True)]
    pool = _pool(server, read_timeout_s=0.2)
    with pytest.raises(ReadTimeout, match=r"did not answer within 0\.2 s") as caught:
        pool.request("GET", "/slow", {})
    assert caught.value.timed_out
    assert pool.num_idle == 0


def test_a_body_that_stops_half_way_times_out(server: RawServer) -> None:
    server.script = [Answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n123")]
    pool = _pool(server, read_timeout_s=0.2)
    streamed = pool.request("GET", "/half", {}, preload=False)
    with pytest.raises(ReadTimeout, match="reading the body") as caught:
        streamed.read(10)
    assert caught.value.timed_out
    assert pool.num_idle == 0


def test_a_refused_connection_is_a_connect_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pool = ConnectionPool("127.0.0.1", port, connect_timeout_s=1, read_timeout_s=1)
    with pytest.raises(ConnectError, match=r"cannot connect to 127\.0\.0\.1") as caught:
        pool.request("GET", "/", {})
    assert not caught.value.timed_out


def test_a_connect_that_gets_no_answer_times_out() -> None:
    """A listener whose backlog is full leaves further connection attempts unanswered."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):  # fill the backlog (its size is rounded by the kernel)
            filler = socket.socket()
            filler.settimeout(0.3)
            try:
                filler.connect(("127.0.0.1", port))
            except TimeoutError:
                filler.close()
                break
            fillers.append(filler)
        else:
            pytest.skip("this kernel accepts every connection into a full backlog")
        pool = ConnectionPool("127.0.0.1", port, connect_timeout_s=0.2, read_timeout_s=1)
        with pytest.raises(ConnectTimeout, match=r"took longer than 0\.2 s") as caught:
            pool.request("GET", "/", {})
        assert caught.value.timed_out
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_a_closed_pool_refuses_requests(server: RawServer) -> None:
    server.script = [ok(b"x")]
    pool = _pool(server)
    assert pool.request("GET", "/", {}).data == b"x"
    pool.close()
    assert pool.num_idle == 0
    with pytest.raises(PoolClosedError):
        pool.request("GET", "/", {})


# --- malformed answers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "not an HTTP status line"),
        (b"HTTP/2 200\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 2x0 OK\r\n\r\n", "bad status code"),
        (b"HTTP/1.1\r\n\r\n", "not an HTTP status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "not a header line"),
        (b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "not a header line"),
        (b"HTTP/1.1 200 OK\r\n folded: first\r\n\r\n", "continuation line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n123", "after 3 bytes of a 10-byte"),
        (b"HTTP/1.1 200 OK\r\nContent-Type: a", "in the middle of the headers"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n", "not followed"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", "middle of a chunk"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", "before the end"),
        (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 101 + b"\r\n", "more than 100 header lines"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70_000 + b"\r\n\r\n", "longer than 65536"),
    ],
)
def test_malformed_answers_are_protocol_errors(
    server: RawServer, data: bytes, message: str
) -> None:
    server.script = [Answer(data, close_after=True)]
    pool = _pool(server)
    with pytest.raises(ProtocolError, match=message):
        pool.request("GET", "/", {})
    assert pool.num_idle == 0  # a connection in an unknown state is never reused


# --- threads -------------------------------------------------------------------------------------


def test_threads_share_the_pool(server: RawServer) -> None:
    server.answer = lambda request: ok(request.line.split()[1].encode())
    pool = _pool(server, max_idle=3)
    failures: list[str] = []

    def work(worker: int) -> None:
        for number in range(25):
            path = f"/{worker}/{number}"
            if number % 2:
                body = pool.request("GET", path, {}, preload=False).read()
            else:
                body = pool.request("GET", path, {}).data
            if body != path.encode():
                failures.append(path)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(server.received) == 200
    # Connections are reused: the 8 threads open 8, and one more only when a thread finds none
    # idle after a connection was closed for want of an idle place (3 here). How often that
    # happens depends on the threads' timing (9 was seen once), so the bound is not 8; without
    # reuse it would be 200.
    assert pool.num_connections <= 20 and pool.num_idle <= 3
    pool.close()


# --- TLS ---------------------------------------------------------------------------------------


def _tls_server(cert: Path, key: Path) -> RawServer:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return RawServer(tls=context)


def _trusting(cert: Path) -> ssl.SSLContext:
    context = http_wire.default_ssl_context()
    context.load_verify_locations(cert)
    return context


def test_https_with_a_trusted_certificate_keeps_connections_alive(tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path, "DNS:localhost,IP:127.0.0.1")
    server = _tls_server(cert, key)
    server.script = [ok(b"secret one"), ok(b"secret two")]
    pool = ConnectionPool(
        "127.0.0.1",
        server.port,
        tls=True,
        ssl_context=_trusting(cert),
        connect_timeout_s=2,
        read_timeout_s=5,
    )
    try:
        assert pool.request("GET", "/1", {}).data == b"secret one"
        streamed = pool.request("GET", "/2", {}, preload=False)
        assert streamed.read(6) == b"secret" and streamed.read() == b" two"
        assert server.connections == 1
        assert f"\r\nHost: 127.0.0.1:{server.port}\r\n".encode() in server.received[0].head
    finally:
        pool.close()
        server.close()


def test_https_verifies_certificates_and_host_names_by_default(tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path, "DNS:elsewhere.invalid")
    server = _tls_server(cert, key)
    server.script = [ok(b"never")]
    try:
        untrusted = ConnectionPool(
            "127.0.0.1", server.port, tls=True, connect_timeout_s=2, read_timeout_s=2
        )
        with pytest.raises(ConnectError, match="CERTIFICATE_VERIFY_FAILED") as caught:
            untrusted.request("GET", "/", {})
        assert not caught.value.timed_out
        wrong_name = ConnectionPool(
            "127.0.0.1",
            server.port,
            tls=True,
            ssl_context=_trusting(cert),  # trusted, but not issued for 127.0.0.1
            connect_timeout_s=2,
            read_timeout_s=2,
        )
        with pytest.raises(ConnectError, match="IP address mismatch"):
            wrong_name.request("GET", "/", {})
        assert not server.received
    finally:
        server.close()
