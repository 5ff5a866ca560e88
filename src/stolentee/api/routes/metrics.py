"""``GET /metrics``: this process's metrics in the Prometheus text format, and the HTTP
middleware that counts and times every request by its route template (never the raw path, so
that ids in URLs do not explode the label set).

With ``STOLENTEE_METRICS_TOKEN`` set the endpoint wants ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, FastAPI, Request, Response

from stolentee.api.deps import ServicesDep
from stolentee.errors import AuthenticationError
from stolentee.metrics import CONTENT_TYPE

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response, responses={403: {"description": "Bad token"}})
async def metrics(request: Request, services: ServicesDep) -> Response:
    """Prometheus text format: HTTP, removals, jobs, queue, database pool, process."""
    token = services.settings.service.metrics_token.get_secret_value()
    if token:
        presented = request.headers.get("authorization", "")
        if not hmac.compare_digest(presented.encode(), f"Bearer {token}".encode()):
            raise AuthenticationError("send the metrics token as Authorization: Bearer <token>")
    return Response(services.runtime.metrics.exposition(), media_type=CONTENT_TYPE)


def install_http_metrics(app: FastAPI) -> None:
    """Count and time every request (route template, method, status)."""

    @app.middleware("http")
    async def http_metrics(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            services = getattr(request.app.state, "services", None)
            if services is not None:
                route = request.scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                method = request.method
                elapsed = time.perf_counter() - started
                services.runtime.metrics.http_requests.labels(method, template, str(status)).inc()
                services.runtime.metrics.http_duration.labels(method, template).observe(elapsed)
                services.latency.observe(method, template, elapsed)
