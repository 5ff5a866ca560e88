"""``GET /v1/ops/summary``: the ops dashboard's figures (:mod:`stolentee.api.ops_summary`).

It tells an outsider a lot about the shop (costs, volumes, providers), so it is served only to
a caller with an API key whenever keys are configured: 401 ``auth_required`` without one, 403
``auth_failed`` with a wrong one; with no key configured, loopback clients only (as the rest of
the API).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from stolentee.api.deps import ServicesDep
from stolentee.api.ops_summary import summary
from stolentee.api.security import API_KEY_HEADER, authenticate
from stolentee.errors import ApiKeyRequiredError

router = APIRouter(prefix="/v1/ops", tags=["ops"])
_ERROR: dict[str, Any] = {"description": 'JSON error: `{"errors": [{"title", "code", "detail"}]}`'}


@router.get("/summary", response_class=JSONResponse, responses={401: _ERROR, 403: _ERROR})
async def ops_summary(request: Request, services: ServicesDep) -> JSONResponse:
    """Health, queue, providers, removals, savings, latency and costs, measured now."""
    keys = services.runtime.keys
    if not request.headers.get(API_KEY_HEADER) and await run_in_threadpool(keys.keys_configured):
        raise ApiKeyRequiredError(f"send an API key in the {API_KEY_HEADER} header")
    await authenticate(request, keys)
    # Plain JSON already: a JSONResponse skips FastAPI's per-field encoding of the document.
    return JSONResponse(await run_in_threadpool(summary, services))
