"""The one place that turns exceptions into HTTP responses.

Every error body has Remove.bg's shape, so clients of its API understand ours too::

    {"errors": [{"title": "...", "code": "...", "detail": "..."}]}

Anything a client sent that we reject is a 4xx with a stable ``code``; an unexpected exception
is logged with its traceback and answered with a bare 500 ``internal_error``. Every error is
sent with ``Cache-Control: no-store``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from stolentee.errors import ServiceUnavailableError, StolenteeError

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: ("invalid_request", "Invalid request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    406: ("not_acceptable", "Not acceptable"),
    413: ("file_too_large", "Request body too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    429: ("rate_limit_exceeded", "Rate limit exceeded"),
}


def error_body(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"errors": list(entries)}


def error_response(
    status_code: int, *entries: dict[str, Any], headers: dict[str, str] | None = None
) -> JSONResponse:
    # No cache keeps an error: a CDN in front must not go on answering a deleted design's 404,
    # or a moment's 503, from its cache.
    headers = {"Cache-Control": "no-store", **(headers or {})}
    return JSONResponse(error_body(*entries), status_code=status_code, headers=headers)


async def _stolentee_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StolenteeError)
    if exc.status_code >= 500:
        log.warning("%s %s failed: %s (%s)", request.method, request.url.path, exc.code, exc.detail)
    headers = dict(exc.headers)
    if isinstance(exc, ServiceUnavailableError):
        headers.setdefault("Retry-After", "5")
    return error_response(exc.status_code, exc.to_dict(), headers=headers or None)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    entries = []
    for err in exc.errors():
        location = ".".join(str(part) for part in err.get("loc", ()) if part != "body")
        entries.append(
            {
                "title": "Invalid request",
                "code": "invalid_request",
                "detail": f"{location}: {err.get('msg', 'invalid value')}"
                if location
                else str(err.get("msg", "invalid value")),
            }
        )
    return error_response(
        400,
        *(
            entries
            or [
                {"title": "Invalid request", "code": "invalid_request", "detail": "invalid request"}
            ]
        ),
    )


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (Starlette names only one route's)."""
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in request.app.router.routes
        )
    ]
    return ", ".join(allowed)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code, title = _HTTP_CODES.get(exc.status_code, ("http_error", "HTTP error"))
    detail = exc.detail if isinstance(exc.detail, str) else title
    headers = dict(exc.headers) if exc.headers else {}
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
    return error_response(
        exc.status_code, {"title": title, "code": code, "detail": detail}, headers=headers or None
    )


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    # Starlette re-raises the exception after this answer, and the server then drops the
    # connection: a client reusing it would meet a reset. ``Connection: close`` tells it not to.
    return error_response(
        500,
        {"title": "Internal error", "code": "internal_error", "detail": "internal error"},
        headers={"Connection": "close"},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StolenteeError, _stolentee_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
