"""``/v1/stats/removal``: what each removal provider did over a range of UTC days.

Requests, successes, failures by kind, latency percentiles, megapixels, Remove.bg credits
charged and credits (and dollars) avoided by self-hosting; per provider, per day and in total.
``stolentee stats removal`` prints the same figures.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from stolentee.api import openapi
from stolentee.api.deps import ServicesDep
from stolentee.api.security import authenticate
from stolentee.removal.stats.store import DEFAULT_RANGE_DAYS, parse_day, resolve_range

router = APIRouter(prefix="/v1/stats", tags=["stats"])

_ERROR: dict[str, Any] = {"description": 'JSON error: `{"errors": [{"title", "code", "detail"}]}`'}


@router.get("/removal", responses={400: _ERROR, 403: _ERROR})
async def removal_stats(
    request: Request,
    services: ServicesDep,
    from_: Annotated[
        str | None,
        Query(
            alias="from",
            description=f"First UTC day, YYYY-MM-DD (default: {DEFAULT_RANGE_DAYS} days up to "
            "`to`).",
            json_schema_extra=openapi.DATE,
        ),
    ] = None,
    to: Annotated[
        str | None,
        Query(
            description="Last UTC day, YYYY-MM-DD, included (default: today).",
            json_schema_extra=openapi.DATE,
        ),
    ] = None,
) -> dict[str, Any]:
    """Removal statistics per provider over ``from`` .. ``to`` (a ``from`` after ``to`` is an
    empty period)."""
    await authenticate(request, services.runtime.keys)
    store = services.runtime.removal_stats
    start, end = resolve_range(
        None if from_ is None else parse_day(from_, name="from"),
        None if to is None else parse_day(to, name="to"),
        today=store.today(),
    )
    report = await run_in_threadpool(lambda: store.report(start=start, end=end))
    return report.as_dict()
