"""Request limits enforced before a handler runs: body size, body read time, uploads per client.

* **Size** (413 ``file_too_large``): checked against ``Content-Length`` up front and against the
  bytes actually received (chunked or lying clients), so no handler buffers more than
  ``max_body_bytes``.
* **Read time** (408 ``request_timeout``): the whole body must arrive within
  ``body_read_timeout_s`` of the request's start; a client that sends half an upload and then
  nothing holds a connection, a worker slot and its buffered bytes only that long.
* **Incomplete uploads per client address** (429 ``too_many_uploads``): at most
  ``max_incomplete_uploads_per_client`` requests of one address may be sending their bodies at
  once (a body is counted from the request's start until its last byte arrived), so one client
  cannot tie up the server with many slow uploads. Behind a reverse proxy the address is the
  one uvicorn takes from ``X-Forwarded-For`` for the proxies it trusts (``FORWARDED_ALLOW_IPS``);
  with an untrusted proxy every client shares the proxy's address, so set that variable there.

Each refusal has Remove.bg's error shape and ``Connection: close``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stolentee.errors import ClientError, FileTooLargeError, RateLimitedError, StolenteeError

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_UPLOAD_RETRY_AFTER_S = 5


class RequestTimeoutError(ClientError):
    status_code = 408
    code = "request_timeout"
    title = "Request timeout"


class TooManyUploadsError(RateLimitedError):
    code = "too_many_uploads"
    title = "Too many uploads in progress"


class BodyTooLargeError(BaseException):
    """Raised inside ``receive`` when the streamed body passes the cap.

    A ``BaseException``, like ``KeyboardInterrupt``: FastAPI's form parsing turns every
    ``Exception`` raised while it reads the body into 400 "error parsing the body", which would
    hide the 413 from uploads to routes with form parameters (``/v1/designs``). Nothing between
    ``receive`` and this middleware may swallow it; the middleware answers 413.
    """


class BodyReadTimeoutError(BaseException):
    """Raised inside ``receive`` when the body did not arrive in time (a ``BaseException`` for
    the reason :class:`BodyTooLargeError` is one); the middleware answers 408."""


class BodyLimitMiddleware:
    """The limits of the module docstring, for every HTTP request."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        body_read_timeout_s: float | None = None,
        max_incomplete_uploads_per_client: int = 0,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_read_timeout_s = body_read_timeout_s
        self.max_incomplete = max_incomplete_uploads_per_client
        self._incomplete: Counter[str] = Counter()  # one event loop per process: no lock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await _refuse(send, self._too_large())
            return
        has_body = scope.get("method") in _BODY_METHODS and (
            (declared or 0) > 0 or _header(scope, b"transfer-encoding") is not None
        )
        client = _client(scope)
        if has_body and self.max_incomplete and self._incomplete[client] >= self.max_incomplete:
            await _refuse(
                send,
                TooManyUploadsError(
                    f"more than {self.max_incomplete} uploads from this address are still being "
                    "sent; finish those first",
                    headers={"Retry-After": str(_UPLOAD_RETRY_AFTER_S)},
                ),
            )
            return
        received = 0
        body_done = not has_body
        response_started = False
        deadline = (
            None
            if self.body_read_timeout_s is None
            else time.monotonic() + self.body_read_timeout_s
        )

        def finish_body() -> None:
            nonlocal body_done
            if not body_done:
                body_done = True
                self._incomplete[client] -= 1
                if self._incomplete[client] <= 0:
                    del self._incomplete[client]

        async def limited_receive() -> Message:
            nonlocal received
            if body_done or deadline is None:
                message = await receive()
            else:
                try:
                    message = await asyncio.wait_for(receive(), deadline - time.monotonic())
                except TimeoutError:
                    raise BodyReadTimeoutError from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLargeError
                if not message.get("more_body", False):
                    finish_body()
            else:
                finish_body()  # the client went away
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        if has_body:
            self._incomplete[client] += 1
        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLargeError:
            if not response_started:
                await _refuse(send, self._too_large())
        except BodyReadTimeoutError:
            if not response_started:
                await _refuse(
                    send,
                    RequestTimeoutError(
                        f"the request body did not arrive within {self.body_read_timeout_s:g} s"
                    ),
                )
        finally:
            finish_body()

    def _too_large(self) -> FileTooLargeError:
        return FileTooLargeError(
            f"the request body is larger than {self.max_body_bytes} bytes "
            f"({self.max_body_bytes / 1_048_576:g} MB)"
        )


async def _refuse(send: Send, error: StolenteeError) -> None:
    body = json.dumps({"errors": [error.to_dict()]}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *((name.lower().encode(), value.encode()) for name, value in error.headers.items()),
    ]
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value)
    return None


def _content_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"
