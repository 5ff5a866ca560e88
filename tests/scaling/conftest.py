"""Fixtures of the autoscaler tests: a clean environment and a local HTTP server that records."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _no_railway_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's (or Railway's own) RAILWAY_* variables must not reach the tests."""
    for name in list(os.environ):
        if name.startswith("RAILWAY_"):
            monkeypatch.delenv(name)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | dict[str, Any] = b""
    headers: dict[str, str] = field(default_factory=dict)


Responder = Callable[[Recorded], Reply]


class LocalServer:
    """A stdlib HTTP server on loopback, in a thread: records every request and answers with
    ``responder`` (set by the test)."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.responder: Responder = lambda request: Reply(404, b"no responder")
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Recorded(
                    method=self.command,
                    path=self.path,
                    headers={key.lower(): value for key, value in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                )
                server.requests.append(request)
                reply = server.responder(request)
                body = reply.body
                content_type = "text/plain; charset=utf-8"
                if isinstance(body, dict):
                    body = json.dumps(body).encode()
                    content_type = "application/json"
                elif isinstance(body, str):
                    body = body.encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.headers.get("Content-Type", content_type))
                for key, value in reply.headers.items():
                    if key != "Content-Type":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = _handle
            do_POST = _handle

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    @property
    def base_url(self) -> str:
        port = self._httpd.server_address[1]
        return f"http://127.0.0.1:{port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def server() -> Iterator[LocalServer]:
    local = LocalServer()
    try:
        yield local
    finally:
        local.close()
