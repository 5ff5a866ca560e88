"""A lean HTTP/1.1 client for the signed S3 requests: keep-alive connections pooled per endpoint.

:mod:`stolentee.storage.s3.requests` makes two or three requests per migrated object; through
urllib3 and :mod:`http.client` each one spent more CPU in the client (header objects, the email
parser reading the answer's headers, one ``putheader`` call per header) than signing it. Here,
written from the HTTP/1.1 message syntax (RFC 9112), a request is one string encoded once and
written with one ``sendall`` (its body too when small), and the answer's head, when it arrived
whole (the usual case), is taken from the read buffer at once and its headers parsed by one
regular expression into a dict (line by line otherwise, or when a line is unusual).

What it does, and no more: ``Content-Length``, chunked and read-to-close bodies; ``HEAD``, 1xx,
204 and 304 answers without a body; ``Connection: close`` and HTTP/1.0 (closed unless
``keep-alive``); https through :mod:`ssl`, verifying certificates and host names against the
system's trust store by default (as urllib3 did for these requests); connect and read timeouts;
a pooled connection the server closed while it sat idle is noticed before use, or, when the
request then fails before a byte of answer, the request is sent once more on a fresh connection.
No redirects, no proxies, no decompression (``Accept-Encoding: identity`` is sent), no retries
beyond that one: the caller owns those.

Every failure is a :class:`WireError`: :class:`ConnectError` (with :class:`ConnectTimeout`),
:class:`ReadTimeout` and :class:`ProtocolError`; ``timed_out`` says whether a timeout caused it.
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
from collections.abc import Mapping
from typing import IO, Final

from stolentee.storage.s3.http_errors import (
    ConnectError,
    ConnectTimeout,
    PoolClosedError,
    ProtocolError,
    ReadTimeout,
)
from stolentee.storage.s3.http_response import (
    MAX_LINE,
    Connection,
    NoAnswer,
    Response,
    fields_of,
    read_fields,
    status_line,
)

_JOIN_BODY_UP_TO: Final = 1024 * 1024  # bodies up to this size leave in the same sendall
_SEND_CHUNK: Final = 256 * 1024  # a streamed body is read and sent in pieces of this size
_BODY_METHODS: Final = frozenset({"PUT", "POST", "PATCH"})  # send Content-Length: 0 without one
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f]").search
# What writing to (or reading from) a connection the server has closed raises.
_CLOSED_ERRORS: Final = (
    BrokenPipeError,
    ConnectionResetError,
    ConnectionAbortedError,
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
)


def default_ssl_context() -> ssl.SSLContext:
    """Certificates and host names verified against the system's trust store (``SSL_CERT_FILE``
    and ``SSL_CERT_DIR`` honoured, as OpenSSL does), TLS 1.2 or later, no session tickets."""
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_TICKET
    context.set_alpn_protocols(["http/1.1"])
    return context


class ConnectionPool:
    """Keep-alive connections to one ``host``:``port`` (TLS when ``tls``), shared by threads.

    As many connections as requests in flight are opened; up to ``max_idle`` of them are kept
    for reuse, the most recently used first.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout_s: float,
        read_timeout_s: float,
        max_idle: int = 10,
    ) -> None:
        self.host = host
        self.port = port
        self.ssl_context = (ssl_context or default_ssl_context()) if tls else None
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.max_idle = max(1, max_idle)
        default_port = 443 if tls else 80
        shown = f"[{host}]" if ":" in host else host
        self.host_header = shown if port == default_port else f"{shown}:{port}"
        self.num_connections = 0  # opened so far
        self._idle: list[Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"ConnectionPool({scheme}://{self.host_header})"

    # --- requests ------------------------------------------------------------------------

    def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        *,
        body: bytes | IO[bytes] | None = None,
        preload: bool = True,
    ) -> Response:
        """Send ``method target`` with ``headers`` (``Host`` added unless given) and ``body``
        (bytes, or a stream of ``Content-Length`` bytes from its current position), and read
        the answer's head; with ``preload`` its body too (then the connection is back in the
        pool before this returns).

        A pooled connection that turns out closed by the server (nothing of an answer came
        back) is replaced by a fresh one and the request sent again, once.
        """
        head, length = _request_head(method, target, headers, body, self.host_header)
        start = -1
        stream = None if body is None or isinstance(body, bytes | bytearray) else body
        if stream is not None:
            try:
                start = stream.tell() if stream.seekable() else -1
            except OSError:
                start = -1
        second_try = False
        while True:
            conn, reused = self._checkout()
            try:
                try:
                    sent = True
                    try:
                        _send(conn, head, body, length)
                    except _CLOSED_ERRORS as exc:
                        # The server may have answered before taking the whole body (an
                        # error, then it closed): read that answer when there is one.
                        sent = False
                        send_error = exc
                    try:
                        response = self._read_head(conn, method, complete=sent)
                    except (NoAnswer, *_CLOSED_ERRORS) as exc:
                        if sent:
                            raise
                        raise NoAnswer(str(send_error) or type(send_error).__name__) from exc
                except NoAnswer as exc:
                    conn.close()
                    rewindable = stream is None or start >= 0
                    if reused and not second_try and rewindable:
                        second_try = True
                        if stream is not None:
                            stream.seek(start)
                        continue
                    raise ProtocolError(
                        f"{self.host_header} closed the connection without answering ({exc})"
                    ) from exc
                except TimeoutError as exc:
                    raise ReadTimeout(
                        f"{self.host_header} did not answer within {self.read_timeout_s:g} s"
                    ) from exc
                except OSError as exc:
                    raise ProtocolError(f"{self.host_header}: {exc}") from exc
            except BaseException:
                conn.close()
                raise
            if preload:
                response.data  # noqa: B018 - reads the body (the connection goes back)
            return response

    def _read_head(self, conn: Connection, method: str, *, complete: bool = True) -> Response:
        """The answer's status line and headers (interim answers skipped); ``complete``: the
        request went out whole (else the connection is not reused after this answer)."""
        reader = conn.reader
        first = True
        while True:
            try:
                arrived = reader.peek(1)  # what came so far (waits for the first bytes)
            except _CLOSED_ERRORS as exc:
                if first:
                    raise NoAnswer(str(exc)) from exc
                raise
            if not arrived:
                if first:
                    raise NoAnswer("end of stream")
                raise ProtocolError("the connection closed between an interim answer and the next")
            first = False
            end = arrived.find(b"\r\n\r\n")
            if end >= 0:  # the whole head is here (the usual case): one read, one parse
                head = reader.read(end + 4)
                line_end = head.index(b"\r\n") + 2
                version, status, reason = status_line(head[:line_end])
                fields = fields_of(head[line_end:-2])
            else:  # still arriving, or longer than the buffer: line by line
                version, status, reason = status_line(reader.readline(MAX_LINE + 1))
                fields = {}
                read_fields(reader, fields, what="header")
            if 100 <= status < 200 and status != 101:
                continue  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            return Response(
                self,
                conn,
                reusable=complete,
                method=method,
                version=version,
                status=status,
                reason=reason,
                fields=fields,
            )

    # --- connections ---------------------------------------------------------------------

    def _checkout(self) -> tuple[Connection, bool]:
        """An idle connection still open (and True), or a new one (and False)."""
        while True:
            with self._lock:
                if self._closed:
                    raise PoolClosedError(f"the connection pool of {self.host_header} is closed")
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._connect(), False
            if conn.dropped():
                conn.close()
                continue
            conn.requests += 1
            return conn, True

    def _connect(self) -> Connection:
        where = f"{self.host_header}"
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout_s)
        except TimeoutError as exc:
            raise ConnectTimeout(
                f"connecting to {where} took longer than {self.connect_timeout_s:g} s"
            ) from exc
        except OSError as exc:
            raise ConnectError(f"cannot connect to {where}: {exc}") from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is not None:
                sock = self.ssl_context.wrap_socket(sock, server_hostname=self.host)
            sock.settimeout(self.read_timeout_s)
        except TimeoutError as exc:
            sock.close()
            raise ConnectTimeout(
                f"the TLS handshake with {where} took longer than {self.connect_timeout_s:g} s"
            ) from exc
        except OSError as exc:  # ssl.SSLError (certificate verification too) is an OSError
            sock.close()
            raise ConnectError(f"cannot connect to {where}: {exc}") from exc
        with self._lock:
            self.num_connections += 1
        conn = Connection(sock)
        conn.requests = 1
        return conn

    def put(self, conn: Connection) -> None:
        """Take back a connection whose last answer was read to its end."""
        with self._lock:
            if not self._closed and len(self._idle) < self.max_idle:
                self._idle.append(conn)
                return
        conn.close()

    @property
    def num_idle(self) -> int:
        return len(self._idle)

    def close(self) -> None:
        """Close the idle connections; those in use close when their answer is done."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


# --- the request -----------------------------------------------------------------------------


def _request_head(
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes | IO[bytes] | None,
    host_header: str,
) -> tuple[bytes, int]:
    """The request line and headers, encoded; and the body's length."""
    if not method.isalpha() or _BAD_TARGET(target) is not None:
        raise ValueError(f"not a valid request line: {method!r} {target!r}")
    lines = [f"{method} {target} HTTP/1.1\r\n"]
    has_host = has_encoding = False
    length = -1
    for name, value in headers.items():
        lower = name.lower()
        if lower == "host":
            has_host = True
        elif lower == "content-length":
            length = int(value)
        elif lower == "accept-encoding":
            has_encoding = True
        elif lower == "transfer-encoding":
            raise ValueError("a Transfer-Encoding of the request is not supported")
        lines.append(f"{name}: {value}\r\n")
    if not has_host:
        lines.insert(1, f"Host: {host_header}\r\n")
    if not has_encoding:
        lines.append("Accept-Encoding: identity\r\n")  # a body exactly as stored
    if length < 0:
        if body is None:
            length = 0
            if method in _BODY_METHODS:
                lines.append("Content-Length: 0\r\n")
        elif isinstance(body, bytes | bytearray):
            length = len(body)
            lines.append(f"Content-Length: {length}\r\n")
        else:
            raise ValueError("a streamed request body needs a Content-Length header")
    elif isinstance(body, bytes | bytearray) and len(body) != length:
        raise ValueError(f"a {len(body)}-byte body sent with Content-Length: {length}")
    lines.append("\r\n")
    text = "".join(lines)
    # One CR and one LF per line, no more: a header name or value carrying either would
    # smuggle headers (or a second request) into this one.
    if text.count("\n") != len(lines) or text.count("\r") != len(lines):
        raise ValueError("a request header name or value contains CR or LF")
    return text.encode("latin-1"), length


def _send(conn: Connection, head: bytes, body: bytes | IO[bytes] | None, length: int) -> None:
    sock = conn.sock
    if body is None or length == 0:
        sock.sendall(head)
    elif isinstance(body, bytes | bytearray):
        if length <= _JOIN_BODY_UP_TO:
            sock.sendall(head + body)
        else:
            sock.sendall(head)
            sock.sendall(body)
    else:
        left = length
        first = True
        while left > 0:
            piece = body.read(min(left, _SEND_CHUNK))
            if not piece:
                raise ValueError(
                    f"the request body ended {left} bytes short of its Content-Length ({length})"
                )
            left -= len(piece)
            if first:
                sock.sendall(head + piece)
                first = False
            else:
                sock.sendall(piece)


# --- the answer ------------------------------------------------------------------------------
