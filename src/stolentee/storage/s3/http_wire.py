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

import contextlib
import io
import re
import select
import socket
import ssl
import threading
from collections.abc import ItemsView, Iterator, Mapping
from typing import IO, Final, cast

_MAX_LINE: Final = 65536  # longest status, header or chunk-size line accepted
_MAX_HEADERS: Final = 100
_READ_BUFFER: Final = 64 * 1024
_JOIN_BODY_UP_TO: Final = 1024 * 1024  # bodies up to this size leave in the same sendall
_SEND_CHUNK: Final = 256 * 1024  # a streamed body is read and sent in pieces of this size
_BODY_METHODS: Final = frozenset({"PUT", "POST", "PATCH"})  # send Content-Length: 0 without one
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f]").search
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}").fullmatch
# One well-formed header line ending with CRLF: a token, a colon, the value without the
# whitespace around it (RFC 9110 section 5.1 and 5.5).
_FIELD_LINE = re.compile(
    r"^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*(.*?)[ \t]*\r$", re.MULTILINE
).findall
_NO_BODY_STATUSES: Final = frozenset({204, 304})
# What writing to (or reading from) a connection the server has closed raises.
_CLOSED_ERRORS: Final = (
    BrokenPipeError,
    ConnectionResetError,
    ConnectionAbortedError,
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
)


class WireError(Exception):
    """The request failed on the way: no answer could be read (see the subclasses)."""

    timed_out = False


class ConnectError(WireError):
    """No connection: refused, unreachable, name unknown, or the TLS handshake failed
    (certificate not trusted, wrong host name)."""


class ConnectTimeout(ConnectError):
    """Connecting (TCP, then the TLS handshake) took longer than the connect timeout."""

    timed_out = True


class ReadTimeout(WireError):
    """The server went quiet for longer than the read timeout (while sending the request or
    reading the answer)."""

    timed_out = True


class ProtocolError(WireError):
    """The connection broke (closed or reset mid-answer) or the answer was not valid HTTP/1.x."""


class PoolClosedError(WireError):
    """A request on a pool already closed."""


def default_ssl_context() -> ssl.SSLContext:
    """Certificates and host names verified against the system's trust store (``SSL_CERT_FILE``
    and ``SSL_CERT_DIR`` honoured, as OpenSSL does), TLS 1.2 or later, no session tickets."""
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_TICKET
    context.set_alpn_protocols(["http/1.1"])
    return context


class Headers(Mapping[str, str]):
    """An answer's headers: names in lower case, looked up in any case; a name given several
    times has its values joined with ``", "``."""

    __slots__ = ("_fields",)

    def __init__(self, fields: dict[str, str]) -> None:
        self._fields = fields  # names already in lower case

    def __getitem__(self, name: str) -> str:
        return self._fields[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._fields

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def items(self) -> ItemsView[str, str]:
        return self._fields.items()

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"


class Connection:
    """One socket (plain or TLS) and the buffered reader of its answers."""

    __slots__ = ("_poll", "reader", "requests", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = cast(io.BufferedReader, sock.makefile("rb", buffering=_READ_BUFFER))
        self.requests = 0  # sent on it so far
        self._poll: select.poll | None = None

    def dropped(self) -> bool:
        """Whether the idle connection became readable: the server closed it (or wrote
        something unasked, which makes it as unusable)."""
        poll = self._poll
        if poll is None:
            poll = self._poll = select.poll()
            poll.register(self.sock, select.POLLIN | select.POLLPRI)
        try:
            return bool(poll.poll(0))
        except OSError:  # pragma: no cover - a closed descriptor
            return True

    def close(self) -> None:
        for closable in (self.reader, self.sock):
            with contextlib.suppress(OSError):  # closing a broken socket
                closable.close()


class _NoAnswer(Exception):
    """The connection ended before a byte of the answer (a stale pooled one, usually)."""


class Response:
    """An answer: ``status``, ``reason``, ``version`` (10 or 11), ``headers``, and its body read
    with :meth:`read` (or all at once as :attr:`data`).

    The connection goes back to its pool by itself once the body has been read to its end;
    :meth:`release_conn` (or :meth:`close`) before that drops it instead (the unread rest of a
    body would otherwise be taken for the next answer).
    """

    __slots__ = (
        "_chunk_left",
        "_chunked",
        "_conn",
        "_data",
        "_done",
        "_pool",
        "_reader",
        "_remaining",
        "_reusable",
        "headers",
        "reason",
        "status",
        "version",
    )

    def __init__(
        self,
        pool: ConnectionPool | None,
        conn: Connection,
        *,
        reusable: bool = True,
        method: str,
        version: int,
        status: int,
        reason: str,
        fields: dict[str, str],
    ) -> None:
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = Headers(fields)
        self._pool = pool
        self._conn: Connection | None = conn
        self._reader = conn.reader
        self._data: bytes | None = None
        self._done = False
        self._chunked = False
        self._chunk_left = -1  # bytes left in the current chunk; -1: before the first one
        connection = fields.get("connection", "").lower()
        tokens = {token.strip() for token in connection.split(",")} if connection else set()
        self._reusable = (
            reusable and "close" not in tokens and (version == 11 or "keep-alive" in tokens)
        )
        if status == 101:  # switched to another protocol: never HTTP again
            self._reusable = False
        self._remaining: int | None
        if method == "HEAD" or status in _NO_BODY_STATUSES or status < 200:
            self._remaining = 0
        elif "transfer-encoding" in fields:
            codings = fields["transfer-encoding"].lower()
            if codings.rsplit(",", 1)[-1].strip() == "chunked":
                self._chunked = True
                self._remaining = None
                if "content-length" in fields:
                    self._reusable = False  # both framings: trust chunked, then never reuse
            else:  # another coding last: the body ends when the server closes
                self._remaining = None
                self._reusable = False
        elif "content-length" in fields:
            self._remaining = _content_length(fields["content-length"])
        else:
            self._remaining = None  # read to close
            self._reusable = False
        if self._remaining == 0:
            self._finish()

    # --- the body ------------------------------------------------------------------------

    @property
    def length_remaining(self) -> int | None:
        """Bytes of the body not read yet; 0 once it ended, None when not known (chunked or
        read-to-close bodies not finished yet)."""
        if self._done:
            return 0
        return None if self._chunked else self._remaining

    @property
    def data(self) -> bytes:
        """The whole body (read on first use, then kept)."""
        if self._data is None:
            self._data = self.read()
        return self._data

    def read(self, amount: int | None = None) -> bytes:
        """Up to ``amount`` bytes of the body (fewer only at its end), or all that is left;
        ``b""`` once it ended. Raises :class:`ReadTimeout` or :class:`ProtocolError`."""
        if self._done or self._conn is None or amount == 0:
            return b""
        try:
            if self._chunked:
                return self._read_chunked(amount)
            remaining = self._remaining
            if remaining is None:  # read to close
                data = self._reader.read() if amount is None else self._reader.read(amount)
                if amount is None or len(data) < amount:
                    self._finish()
                return data
            want = remaining if amount is None or amount > remaining else amount
            data = self._reader.read(want)
            if len(data) < want:
                raise ProtocolError(
                    f"the connection closed after {self._body_read(len(data))} bytes of a "
                    f"{self.headers.get('content-length')}-byte body"
                )
            self._remaining = remaining - want
            if self._remaining == 0:
                self._finish()
            return data
        except TimeoutError as exc:
            self.close()
            raise ReadTimeout(f"no data for {self._timeout_text()} reading the body") from exc
        except OSError as exc:
            self.close()
            raise ProtocolError(f"the connection broke reading the body: {exc}") from exc
        except WireError:
            self.close()
            raise

    def _body_read(self, last: int) -> int:
        assert self._remaining is not None
        return _content_length(self.headers["content-length"]) - self._remaining + last

    def _read_chunked(self, amount: int | None) -> bytes:
        reader = self._reader
        parts: list[bytes] = []
        want = amount
        while want is None or want > 0:
            left = self._chunk_left
            if left <= 0:
                # left == 0: the previous chunk's data ends with CRLF
                if left == 0 and reader.readline(_MAX_LINE + 1) not in (b"\r\n", b"\n"):
                    raise ProtocolError("a chunk's data was not followed by CRLF")
                line = reader.readline(_MAX_LINE + 1)
                if not line:
                    raise ProtocolError("the connection closed before the end of a chunked body")
                size_text = line.split(b";", 1)[0].strip()
                if _HEX(size_text) is None:
                    raise ProtocolError(f"bad chunk size line {_shown(line)}")
                left = int(size_text, 16)
                if left == 0:
                    _read_fields(reader, {}, what="trailer")
                    self._finish()
                    break
            take = left if want is None or want > left else want
            data = reader.read(take)
            if len(data) < take:
                raise ProtocolError("the connection closed in the middle of a chunk")
            parts.append(data)
            self._chunk_left = left - take
            if want is not None:
                want -= take
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _finish(self) -> None:
        """The body ended: the connection goes back to the pool (or is closed)."""
        self._done = True
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._reusable and self._pool is not None:
            self._pool.put(conn)
        else:
            conn.close()

    def release_conn(self) -> None:
        """Done with the answer: a connection whose body was not read to its end is dropped
        (it was pooled already when it was)."""
        self.close()

    def close(self) -> None:
        """Drop the connection now (a body not read to its end cannot be read any more)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _timeout_text(self) -> str:
        pool = self._pool
        return f"{pool.read_timeout_s:g} s" if pool is not None else "the read timeout"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


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
                    except (_NoAnswer, *_CLOSED_ERRORS) as exc:
                        if sent:
                            raise
                        raise _NoAnswer(str(send_error) or type(send_error).__name__) from exc
                except _NoAnswer as exc:
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
                    raise _NoAnswer(str(exc)) from exc
                raise
            if not arrived:
                if first:
                    raise _NoAnswer("end of stream")
                raise ProtocolError("the connection closed between an interim answer and the next")
            first = False
            end = arrived.find(b"\r\n\r\n")
            if end >= 0:  # the whole head is here (the usual case): one read, one parse
                head = reader.read(end + 4)
                line_end = head.index(b"\r\n") + 2
                version, status, reason = _status_line(head[:line_end])
                fields = _fields_of(head[line_end:-2])
            else:  # still arriving, or longer than the buffer: line by line
                version, status, reason = _status_line(reader.readline(_MAX_LINE + 1))
                fields = {}
                _read_fields(reader, fields, what="header")
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


def _status_line(line: bytes) -> tuple[int, int, str]:
    """``HTTP/1.1 200 OK`` as (11, 200, "OK")."""
    parts = line.split(None, 2)
    if len(parts) < 2 or len(line) > _MAX_LINE:
        raise ProtocolError(f"not an HTTP status line: {_shown(line)}")
    protocol, code = parts[0], parts[1]
    if protocol == b"HTTP/1.1":
        version = 11
    elif protocol == b"HTTP/1.0":
        version = 10
    else:
        raise ProtocolError(f"not an HTTP/1.x status line: {_shown(line)}")
    if len(code) != 3 or not code.isdigit():
        raise ProtocolError(f"bad status code in {_shown(line)}")
    reason = parts[2].strip().decode("latin-1") if len(parts) > 2 else ""
    return version, int(code), reason


def _fields_of(block: bytes) -> dict[str, str]:
    """Header lines, each ending with CRLF, as a dict (names lower-cased)."""
    if not block:
        return {}
    text = block.decode("latin-1")
    pairs = _FIELD_LINE(text)
    if len(pairs) == text.count("\n") and len(pairs) <= _MAX_HEADERS:
        fields = {name.lower(): value for name, value in pairs}
        if len(fields) == len(pairs):
            return fields
    # A name given twice, a folded or a malformed line: line by line (or a clear error).
    fields = {}
    _read_fields(io.BytesIO(block + b"\r\n"), fields, what="header")
    return fields


def _read_fields(reader: io.BufferedIOBase, fields: dict[str, str], *, what: str) -> None:
    """Header (or trailer) lines up to the empty line, into ``fields`` (names lower-cased)."""
    last = ""
    for _ in range(_MAX_HEADERS + 1):
        line = reader.readline(_MAX_LINE + 1)
        if line == b"\r\n" or line == b"\n":
            return
        if not line:
            raise ProtocolError(f"the connection closed in the middle of the {what}s")
        if len(line) > _MAX_LINE:
            raise ProtocolError(f"a {what} line longer than {_MAX_LINE} bytes")
        if line[0] in (0x20, 0x09):  # obs-fold: continues the previous value
            if not last:
                raise ProtocolError(f"a {what} block starts with a continuation line")
            fields[last] += " " + line.strip().decode("latin-1")
            continue
        name, colon, value = line.partition(b":")
        name = name.strip()
        if not colon or not name or b" " in name or b"\t" in name:
            raise ProtocolError(f"not a {what} line: {_shown(line)}")
        last = name.decode("latin-1").lower()
        text = value.strip().decode("latin-1")
        previous = fields.get(last)
        fields[last] = text if previous is None else f"{previous}, {text}"
    raise ProtocolError(f"more than {_MAX_HEADERS} {what} lines")


def _content_length(value: str) -> int:
    if value.isdigit() and value.isascii():
        return int(value)
    values = {part.strip() for part in value.split(",")}  # "5, 5" is 5; "5, 6" is an error
    text = values.pop() if len(values) == 1 else ""
    if not text.isdigit() or not text.isascii():
        raise ProtocolError(f"bad Content-Length: {value!r}")
    return int(text)


def _shown(line: bytes) -> str:
    """A received line for an error message (bounded, escaped)."""
    return repr(line[:120]) + ("..." if len(line) > 120 else "")
