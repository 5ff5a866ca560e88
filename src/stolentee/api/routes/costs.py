"""``/v1/costs/report``: what this service saves now, and the seed report's scenarios.

``live`` compares the last ``days`` of measured removals (the statistics in the database) and the
configured storage with the counterfactual "everything through Remove.bg, Supabase storage",
scaled to a month; ``scenarios`` is the seed's Scenario A and B under a pricing policy
(``corrected`` applies the price book faithfully, ``as-reported`` reproduces the report). The CLI
shows the same: ``stolentee costs report``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from stolentee.api.deps import ServicesDep
from stolentee.api.security import authenticate
from stolentee.costs.items import POLICIES, get_policy
from stolentee.costs.live import recent_live_savings
from stolentee.costs.model import build_report
from stolentee.costs.profile_files import default_profiles
from stolentee.costs.report import report_dict
from stolentee.errors import InvalidOptionError

router = APIRouter(prefix="/v1/costs", tags=["costs"])

_ERROR: dict[str, Any] = {"description": 'JSON error: `{"errors": [{"title", "code", "detail"}]}`'}


@router.get("/report", responses={400: _ERROR, 403: _ERROR})
async def costs_report(
    request: Request,
    services: ServicesDep,
    policy: Annotated[
        str,
        Query(
            description="`corrected` (the price book as is) or `as-reported` (the seed).",
            json_schema_extra={"enum": sorted(POLICIES)},
        ),
    ] = "corrected",
    days: Annotated[int, Query(ge=1, le=366, description="Days of measured usage.")] = 30,
) -> dict[str, Any]:
    """Live savings from measured usage, and the seed's scenarios under ``policy``."""
    await authenticate(request, services.runtime.keys)
    try:
        chosen = get_policy(policy)
    except ValueError as exc:
        raise InvalidOptionError(str(exc)) from exc

    def compute() -> dict[str, Any]:
        live = recent_live_savings(
            services.pricebook,
            services.runtime.removal_stats,
            storage_backend=services.settings.storage.backend,
            storage_endpoint=services.settings.storage.active_endpoint,
            days=days,
        )
        scenarios = build_report(services.pricebook, default_profiles(), policy=chosen)
        return {"live": live.as_dict(), "scenarios": report_dict(scenarios)}

    return await run_in_threadpool(compute)
