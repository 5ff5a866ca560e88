"""Request limits enforced before a handler runs: the body size cap (413 ``file_too_large``).

The cap is checked against ``Content-Length`` up front and against the bytes actually received
(chunked or lying clients), so no handler ever buffers more than ``max_body_bytes``.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stolentee.errors import FileTooLargeError


class BodyTooLargeError(BaseException):
    """Raised inside ``receive`` when the streamed body passes the cap.

    A ``BaseException``, like ``KeyboardInterrupt``: FastAPI's form parsing turns every
    ``Exception`` raised while it reads the body into 400 "error parsing the body", which would
    hide the 413 from uploads to routes with form parameters (``/v1/designs``). Nothing between
    ``receive`` and this middleware may swallow it; the middleware answers 413.
    """


class BodyLimitMiddleware:
    """Refuse request bodies larger than ``max_body_bytes`` with 413 in Remove.bg's error shape."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await self._refuse(send)
            return
        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLargeError
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLargeError:
            if not response_started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        error = FileTooLargeError(
            f"the request body is larger than {self.max_body_bytes} bytes "
            f"({self.max_body_bytes / 1_048_576:g} MB)"
        )
        body = json.dumps({"errors": [error.to_dict()]}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": error.status_code,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
