"""A local stand-in of Cloudflare's purge-by-URL API, for the request's shape only (no
Cloudflare account is reachable from the test machines): ``POST /zones/<zone>/purge_cache``
with a bearer token and ``{"files": [...]}``, answered as Cloudflare documents it. It refuses
what Cloudflare would (a wrong token, more than 30 files) and can be told to rate-limit."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ZONE = "0123456789abcdef0123456789abcdef"
TOKEN = "cf-test-token"
MAX_FILES = 30


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    standin: CloudflareStandIn


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        standin = self.server.standin
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with standin.lock:
            standin.requests.append(
                {"path": self.path, "headers": dict(self.headers), "body": body}
            )
            limited = standin.rate_limited > 0
            if limited:
                standin.rate_limited -= 1
        if self.path != f"/client/v4/zones/{ZONE}/purge_cache":
            self._answer(404, _error(7003, "Could not route to the zone"))
        elif self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._answer(403, _error(10000, "Authentication error"))
        elif limited:
            self._answer(
                429, _error(971, "Please wait and consider throttling"), {"Retry-After": "1"}
            )
        else:
            files = json.loads(body).get("files")
            if not isinstance(files, list) or not files or len(files) > MAX_FILES:
                self._answer(400, _error(1015, f"files: 1 to {MAX_FILES} URLs"))
            else:
                with standin.lock:
                    standin.purged.extend(files)
                self._answer(
                    200, {"success": True, "errors": [], "messages": [], "result": {"id": ZONE}}
                )


def _error(code: int, message: str) -> dict[str, Any]:
    return {"success": False, "errors": [{"code": code, "message": message}], "messages": []}


class CloudflareStandIn:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.purged: list[str] = []
        self.rate_limited = 0  # answer this many requests with 429 first
        self.lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.standin = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/client/v4"

    def start(self) -> CloudflareStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
