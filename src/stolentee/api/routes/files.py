"""``GET``/``HEAD /uploads/{key}`` and ``/assets/{key}``: stored objects with CDN cache headers.

The cache rules are the seed report's (section 2.4, ``storage/cache_policy.py``); validators are
the content hash (strong ``ETag``) and the file's modification time. Conditional requests answer
304, single byte ranges 206, unsatisfiable ranges 416. Objects are user content, so they are sent
with ``nosniff``, a sandboxing CSP and, unless they are images, as downloads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from stolentee.api.deps import StorageDep
from stolentee.api.errors import error_response
from stolentee.api.http_ranges import (
    ByteRange,
    if_range_allows,
    is_not_modified,
    object_headers,
    parse_range,
    partial_headers,
    unsatisfiable_content_range,
    validator_headers,
)
from stolentee.errors import ObjectNotFoundError, RangeNotSatisfiableError
from stolentee.storage.base import KEY_PATTERN, KEY_SCHEMA_MAX_LENGTH, ObjectInfo, Storage
from stolentee.storage.cache_policy import (
    ASSETS_PREFIX,
    UPLOADS_PREFIX,
    cache_policy_for,
)

router = APIRouter(tags=["files"])

# The key's rules in the schema only: the storage layer checks them (400 invalid_key).
KeyParam = Annotated[
    str,
    Path(json_schema_extra={"pattern": KEY_PATTERN, "maxLength": KEY_SCHEMA_MAX_LENGTH}),
]
_ERROR = {"description": 'JSON error: `{"errors": [{"title", "code", "detail"}]}`'}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The object", "content": {"application/octet-stream": {}}},
    206: {"description": "One byte range of the object"},
    304: {"description": "Not modified (If-None-Match / If-Modified-Since)"},
    400: _ERROR,
    404: _ERROR,
    416: _ERROR,
}


@router.get("/uploads/{key:path}", responses=_RESPONSES, response_class=Response)
@router.head("/uploads/{key:path}", responses=_RESPONSES, response_class=Response)
async def get_upload(key: KeyParam, request: Request, storage: StorageDep) -> Response:
    """A user upload: cached for a day, served stale for a week while revalidating."""
    return await serve_object(request, storage, UPLOADS_PREFIX + key)


@router.get("/assets/{key:path}", responses=_RESPONSES, response_class=Response)
@router.head("/assets/{key:path}", responses=_RESPONSES, response_class=Response)
async def get_asset(key: KeyParam, request: Request, storage: StorageDep) -> Response:
    """A content-addressed asset: cached for a week, immutable."""
    return await serve_object(request, storage, ASSETS_PREFIX + key)


async def serve_object(request: Request, storage: Storage, key: str) -> Response:
    """Answer a GET or HEAD for the public object ``key`` (which starts with its prefix)."""
    policy = cache_policy_for(key)
    if policy is None or key in (UPLOADS_PREFIX, ASSETS_PREFIX):
        raise ObjectNotFoundError(f"no object under key {key!r}")
    info = await run_in_threadpool(storage.head, key)
    if is_not_modified(_conditional_headers(request), info):
        return Response(status_code=304, headers=validator_headers(info, policy))
    if request.method == "HEAD":  # Range applies to GET only (RFC 9110 section 14.2)
        return Response(status_code=200, headers=object_headers(info, policy))
    try:
        byte_range = _requested_range(request, info)
    except RangeNotSatisfiableError as exc:
        return _unsatisfiable(exc, info)
    if byte_range is None:
        body = await _open(storage, key, 0, None)
        return StreamingResponse(body, status_code=200, headers=object_headers(info, policy))
    body = await _open(storage, key, byte_range.start, byte_range.end)
    headers = partial_headers(info, policy, byte_range)
    return StreamingResponse(body, status_code=206, headers=headers)


def _conditional_headers(request: Request) -> dict[str, str]:
    """``If-None-Match`` (its lines joined: it is a list) and ``If-Modified-Since`` if single."""
    headers: dict[str, str] = {}
    if_none_match = request.headers.getlist("if-none-match")
    if if_none_match:
        headers["if-none-match"] = ", ".join(if_none_match)
    if_modified_since = request.headers.getlist("if-modified-since")
    if len(if_modified_since) == 1:
        headers["if-modified-since"] = if_modified_since[0]
    return headers


def _requested_range(request: Request, info: ObjectInfo) -> ByteRange | None:
    """The range to send, ``None`` for the whole object (no, malformed or stale Range)."""
    ranges = request.headers.getlist("range")
    if len(ranges) != 1 or not if_range_allows(request.headers.get("if-range"), info):
        return None
    return parse_range(ranges[0], info.size)


def _unsatisfiable(exc: RangeNotSatisfiableError, info: ObjectInfo) -> Response:
    """416 with the JSON error body and ``Content-Range: bytes */size`` (not cacheable)."""
    headers = {
        "Content-Range": unsatisfiable_content_range(info.size),
        "Accept-Ranges": "bytes",
    }
    return error_response(exc.status_code, exc.to_dict(), headers=headers)


async def _open(storage: Storage, key: str, start: int, end: int | None) -> AsyncIterator[bytes]:
    """Open the byte range off the event loop; the chunks are then read in the thread pool."""
    chunks = await run_in_threadpool(storage.open_range, key, start, end)
    return _stream(chunks)


async def _stream(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Yield ``chunks`` read in the thread pool, closing the reader even if the client leaves."""
    try:
        async for chunk in iterate_in_threadpool(chunks):
            yield chunk
    finally:
        if isinstance(chunks, Generator):
            chunks.close()
