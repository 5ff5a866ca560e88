"""Real HTTP for tests: a fault-injecting reverse proxy, and an ASGI app served in a thread.

:class:`FaultProxy` sits between a client and a real server and misbehaves on demand::

    with FaultProxy("http://127.0.0.1:8123").start() as proxy:
        client_base_url = proxy.url                      # talk to the proxy instead
        proxy.set_mode("error", status=503, every_nth=2)  # 1st, 3rd, 5th... request: 503
        proxy.set_mode("slow", delay_s=2.0)              # answer late (client timeouts)
        proxy.set_mode("drop")                           # close the connection, no answer
        proxy.set_mode("status", status=402, body={"errors": [...]})  # fixed answer
        proxy.set_mode("pass")                           # forward faithfully again
        assert proxy.count("/v1.0/removebg") == 3        # requests received, per path prefix

Modes apply to every request, or only to those whose path starts with ``path_prefix`` (the
others are forwarded): ``proxy.set_mode("drop", path_prefix="/v1.0/removebg")`` kills removals
while health probes still pass. Every request is counted when it has been read, before the
mode acts, so counts are final as soon as the client has its answer (or its error).

It is a stdlib ``ThreadingHTTPServer`` on a free loopback port (HTTP/1.1, keep-alive), usable
from any test, including multi-process ones: the servers under test only need its URL.

:class:`LiveServer` runs an ASGI app (e.g. ``create_app(settings, role="removal")``) with uvicorn
in a background thread on a free loopback port, for tests that need a real server in-process.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import uvicorn

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
    }
)
_SKIP_RESPONSE = _HOP_BY_HOP | {"server", "date"}

Body = bytes | str | Mapping[str, Any] | list[Any]


# --- modes --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pass:
    """Forward the request and its answer unchanged."""


@dataclass(frozen=True, slots=True)
class Slow:
    """Wait ``delay_s`` before forwarding (the client's read timeout fires first)."""

    delay_s: float


@dataclass(frozen=True, slots=True)
class Error:
    """Answer ``status`` (5xx by default use) instead of forwarding, on the 1st request after
    the mode was set and every ``every_nth`` one after it; the others are forwarded."""

    status: int = 503
    every_nth: int = 1
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Drop:
    """Close the connection without answering."""


@dataclass(frozen=True, slots=True)
class Status:
    """Answer every request with a fixed status, body and headers (nothing is forwarded)."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


Mode = Pass | Slow | Error | Drop | Status


def _encode_body(body: Body | None) -> tuple[bytes, str | None]:
    """Bytes and a default content type for a body given as bytes, text or JSON data."""
    if body is None:
        return b"", None
    if isinstance(body, bytes):
        return body, "application/octet-stream"
    if isinstance(body, str):
        return body.encode(), "text/plain; charset=utf-8"
    return json.dumps(body).encode(), "application/json"


def _headers(
    body_type: str | None, headers: Mapping[str, str] | None
) -> tuple[tuple[str, str], ...]:
    given = dict(headers or {})
    if body_type is not None and not any(name.lower() == "content-type" for name in given):
        given["Content-Type"] = body_type
    return tuple(given.items())


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """What the proxy received (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body_size: int


@dataclass
class _State:
    mode: Mode = field(default_factory=Pass)
    path_prefix: str | None = None
    mode_hits: int = 0  # requests the current mode applied to


# --- the proxy ----------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    proxy: FaultProxy


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 60  # idle keep-alive connections are closed after this

    def setup(self) -> None:
        super().setup()
        self.server.proxy._track(self.connection, add=True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.proxy._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read counts, not access logs."""

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        proxy = self.server.proxy
        body = self._read_body()
        mode, hit = proxy._admit(
            ReceivedRequest(
                method=self.command,
                path=self.path,
                headers={name.lower(): value for name, value in self.headers.items()},
                body_size=len(body),
            )
        )
        try:
            if isinstance(mode, Drop):
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            if isinstance(mode, Status):
                self._answer(mode.status, mode.headers, mode.body)
                return
            if isinstance(mode, Error) and (hit - 1) % mode.every_nth == 0:
                self._answer(mode.status, mode.headers, mode.body)
                return
            if isinstance(mode, Slow) and proxy._stopping.wait(mode.delay_s):
                self.close_connection = True  # the proxy is stopping: give up
                return
            self._forward(body)
        except OSError:  # the client went away (its timeout fired): nothing to answer
            self.close_connection = True

    def _forward(self, body: bytes) -> None:
        proxy = self.server.proxy
        target = urlsplit(proxy.target_url)
        connection_class = (
            http.client.HTTPSConnection if target.scheme == "https" else http.client.HTTPConnection
        )
        upstream = connection_class(target.netloc, timeout=proxy.upstream_timeout_s)
        headers = {
            name: value for name, value in self.headers.items() if name.lower() not in _HOP_BY_HOP
        }
        try:
            upstream.request(
                self.command, target.path.rstrip("/") + self.path, body=body, headers=headers
            )
            response = upstream.getresponse()
            answer = response.read()
            answer_headers = tuple(
                (name, value)
                for name, value in response.getheaders()
                if name.lower() not in _SKIP_RESPONSE
            )
            status = response.status
        except OSError as exc:
            error = {
                "errors": [{"title": "Bad gateway", "code": "proxy_upstream", "detail": str(exc)}]
            }
            self._answer(502, (("Content-Type", "application/json"),), json.dumps(error).encode())
            return
        finally:
            upstream.close()
        self._answer(status, answer_headers, answer)

    def _answer(self, status: int, headers: tuple[tuple[str, str], ...], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in _SKIP_RESPONSE:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()


class FaultProxy:
    """A reverse proxy to ``target_url`` whose behaviour tests switch at run time."""

    def __init__(
        self, target_url: str, *, host: str = "127.0.0.1", upstream_timeout_s: float = 60.0
    ) -> None:
        self.target_url = target_url.rstrip("/")
        self.host = host
        self.upstream_timeout_s = upstream_timeout_s
        self._lock = threading.Lock()
        self._state = _State()
        self._received: list[ReceivedRequest] = []
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- life cycle -----------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        server = _Server((self.host, 0), _Handler)
        server.proxy = self
        self._server = server
        self._stopping.clear()
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        port: int = self._server.server_address[1]
        return port

    @property
    def url(self) -> str:
        """Base URL of the proxy (no trailing slash); paths are appended to the target's."""
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        """Stop accepting, wake slow requests, close open connections."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FaultProxy:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- behaviour ------------------------------------------------------------------------------

    def set_mode(self, mode: str | Mode, *, path_prefix: str | None = None, **params: Any) -> None:
        """Switch behaviour: ``"pass"``, ``"slow"`` (``delay_s``), ``"error"`` (``status``,
        ``every_nth``, ``body``, ``headers``), ``"drop"``, ``"status"`` (``status``, ``body``,
        ``headers``), or a mode object. ``body`` may be bytes, text, or JSON data (a dict)."""
        if isinstance(mode, str):
            mode = self._build(mode, params)
        elif params:
            raise TypeError("parameters go with a mode name, not a mode object")
        with self._lock:
            self._state = _State(mode=mode, path_prefix=path_prefix)

    @staticmethod
    def _build(name: str, params: dict[str, Any]) -> Mode:
        if name == "pass":
            return Pass(**params)
        if name == "slow":
            return Slow(**params)
        if name == "drop":
            return Drop(**params)
        if name in ("error", "status"):
            body, body_type = _encode_body(params.pop("body", None))
            headers = _headers(body_type, params.pop("headers", None))
            if name == "error":
                every_nth = int(params.pop("every_nth", 1))
                if every_nth < 1:
                    raise ValueError("every_nth must be at least 1")
                return Error(
                    status=params.pop("status", 503),
                    every_nth=every_nth,
                    body=body,
                    headers=headers,
                    **params,
                )
            return Status(status=params.pop("status"), body=body, headers=headers, **params)
        raise ValueError(f"unknown mode {name!r}: pass, slow, error, drop or status")

    # shorthands
    def pass_through(self, *, path_prefix: str | None = None) -> None:
        self.set_mode(Pass(), path_prefix=path_prefix)

    def slow(self, delay_s: float, *, path_prefix: str | None = None) -> None:
        self.set_mode(Slow(delay_s), path_prefix=path_prefix)

    def error(
        self,
        status: int = 503,
        *,
        every_nth: int = 1,
        body: Body | None = None,
        headers: Mapping[str, str] | None = None,
        path_prefix: str | None = None,
    ) -> None:
        self.set_mode(
            "error",
            status=status,
            every_nth=every_nth,
            body=body,
            headers=headers,
            path_prefix=path_prefix,
        )

    def drop(self, *, path_prefix: str | None = None) -> None:
        self.set_mode(Drop(), path_prefix=path_prefix)

    def status(
        self,
        status: int,
        *,
        body: Body | None = None,
        headers: Mapping[str, str] | None = None,
        path_prefix: str | None = None,
    ) -> None:
        self.set_mode("status", status=status, body=body, headers=headers, path_prefix=path_prefix)

    @property
    def mode(self) -> Mode:
        with self._lock:
            return self._state.mode

    # --- what was received ----------------------------------------------------------------------

    @property
    def requests(self) -> int:
        """Requests received since start (or the last :meth:`reset`)."""
        with self._lock:
            return len(self._received)

    @property
    def received(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._received)

    def count(self, path_prefix: str | None = None, *, method: str | None = None) -> int:
        """Requests received whose path starts with ``path_prefix`` (and of ``method``)."""
        with self._lock:
            return sum(
                1
                for request in self._received
                if (path_prefix is None or request.path.startswith(path_prefix))
                and (method is None or request.method == method.upper())
            )

    def reset(self) -> None:
        """Forget the requests received (the mode stays)."""
        with self._lock:
            self._received.clear()

    # --- called by the handler threads ----------------------------------------------------------

    def _admit(self, request: ReceivedRequest) -> tuple[Mode, int]:
        """Count the request; the mode that applies to it and its number under that mode."""
        with self._lock:
            self._received.append(request)
            state = self._state
            if state.path_prefix is not None and not request.path.startswith(state.path_prefix):
                return Pass(), 0
            state.mode_hits += 1
            return state.mode, state.mode_hits

    def _track(self, connection: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)


# --- an ASGI app on a real port -----------------------------------------------------------------


class LiveServer:
    """Serve an ASGI app with uvicorn in a daemon thread on a free loopback port.

    ``with LiveServer(app) as server: httpx.get(server.url + "/health")``. The lifespan runs
    (start-up completes before :meth:`start` returns; shutdown in :meth:`stop`).
    """

    def __init__(self, app: Any, *, startup_timeout_s: float = 60.0) -> None:
        self.app = app
        self.startup_timeout_s = startup_timeout_s
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> LiveServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._socket = sock
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="on", timeout_keep_alive=30
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="live-server", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout_s
        while not server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server exited during start-up (see the log above)")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the server did not start in time")
            time.sleep(0.01)
        return self

    @property
    def url(self) -> str:
        if self._socket is None:
            raise RuntimeError("the server is not started")
        port: int = self._socket.getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> LiveServer:
        if self._thread is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
