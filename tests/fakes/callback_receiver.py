"""A callback receiver for tests: a real HTTP server on 127.0.0.1 answering from a script."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HANG = "hang"  # accept the request, never answer (until the receiver stops)


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    receiver: Receiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up on a hanging answer is expected


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        receiver = self.server.receiver
        answer = receiver.record(
            Received(path=self.path, headers=dict(self.headers.items()), body=body)
        )
        if isinstance(answer, str):  # HANG
            receiver.stopping.wait()
            return
        status, location = answer if isinstance(answer, tuple) else (answer, None)
        self.send_response(status)
        if location is not None:
            self.send_header("Location", location)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_PURGE = do_POST  # a Varnish stand-in for the purge tests


Answer = int | str | tuple[int, str]


class Receiver:
    """Answers the n-th POST with ``script[n]`` (the last entry repeats): a status code,
    ``(status, location)``, or :data:`HANG`. Records every request."""

    def __init__(self, script: list[Answer] | None = None) -> None:
        self.script: list[Answer] = script or [200]
        self.requests: list[Received] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.receiver = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str = "/hooks/stolentee") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def record(self, request: Received) -> Answer:
        with self._lock:
            index = len(self.requests)
            self.requests.append(request)
        return self.script[min(index, len(self.script) - 1)]

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
