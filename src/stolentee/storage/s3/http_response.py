"""Reading one HTTP/1.1 response: status line, header fields and a body by length or chunks, with
every limit enforced."""

from __future__ import annotations

import contextlib
import io
import re
import select
import socket
from collections.abc import ItemsView, Iterator, Mapping
from typing import Final, Protocol, cast

from stolentee.storage.s3.http_errors import (
    ProtocolError,
    ReadTimeout,
    WireError,
)

MAX_LINE: Final = 65536  # longest status, header or chunk-size line accepted


_MAX_HEADERS: Final = 100


_READ_BUFFER: Final = 64 * 1024


_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}").fullmatch


# One well-formed header line ending with CRLF: a token, a colon, the value without the
# whitespace around it (RFC 9110 section 5.1 and 5.5).
_FIELD_LINE = re.compile(
    r"^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*(.*?)[ \t]*\r$", re.MULTILINE
).findall


_NO_BODY_STATUSES: Final = frozenset({204, 304})


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


class ConnectionHome(Protocol):
    """Where a response hands its connection back once its body is read: the pool."""

    read_timeout_s: float

    def put(self, conn: Connection) -> None: ...


class NoAnswer(Exception):
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
        pool: ConnectionHome | None,
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
                if left == 0 and reader.readline(MAX_LINE + 1) not in (b"\r\n", b"\n"):
                    raise ProtocolError("a chunk's data was not followed by CRLF")
                line = reader.readline(MAX_LINE + 1)
                if not line:
                    raise ProtocolError("the connection closed before the end of a chunked body")
                size_text = line.split(b";", 1)[0].strip()
                if _HEX(size_text) is None:
                    raise ProtocolError(f"bad chunk size line {_shown(line)}")
                left = int(size_text, 16)
                if left == 0:
                    read_fields(reader, {}, what="trailer")
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


def status_line(line: bytes) -> tuple[int, int, str]:
    """``HTTP/1.1 200 OK`` as (11, 200, "OK")."""
    parts = line.split(None, 2)
    if len(parts) < 2 or len(line) > MAX_LINE:
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


def fields_of(block: bytes) -> dict[str, str]:
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
    read_fields(io.BytesIO(block + b"\r\n"), fields, what="header")
    return fields


def read_fields(reader: io.BufferedIOBase, fields: dict[str, str], *, what: str) -> None:
    """Header (or trailer) lines up to the empty line, into ``fields`` (names lower-cased)."""
    last = ""
    for _ in range(_MAX_HEADERS + 1):
        line = reader.readline(MAX_LINE + 1)
        if line == b"\r\n" or line == b"\n":
            return
        if not line:
            raise ProtocolError(f"the connection closed in the middle of the {what}s")
        if len(line) > MAX_LINE:
            raise ProtocolError(f"a {what} line longer than {MAX_LINE} bytes")
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
