"""The FastAPI application: ``create_app(settings)`` builds it; its lifespan builds the runtime.

Long-lived objects come from :func:`stolentee.runtime.build_runtime` (database pool, storage,
removal engine, queue, key store), once per process, and reach routes through ``api/deps.py``
with the few parts only HTTP needs (admission gate, rate limiter, price book).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from stolentee import __version__
from stolentee.api.admission import RemovalGate
from stolentee.api.deps import Services
from stolentee.api.drain import ConnectionCloseWhileDraining, Drain
from stolentee.api.errors import install_error_handlers
from stolentee.api.latency import RouteLatency
from stolentee.api.limits import BodyLimitMiddleware
from stolentee.api.model_choice import premium_model
from stolentee.api.openapi import install_openapi
from stolentee.api.ops_summary import cost_projection
from stolentee.api.removal_service import RemovalService
from stolentee.api.routes import (
    costs,
    designs,
    files,
    health,
    ops,
    rembg,
    removebg,
    stats,
    uploads,
    web,
)
from stolentee.api.routes import metrics as metrics_routes
from stolentee.api.routes.metrics import install_http_metrics
from stolentee.config import Settings
from stolentee.costs.pricebook_files import load_pricebook
from stolentee.db import migrate
from stolentee.db.engine import Database
from stolentee.errors import StolenteeError
from stolentee.logs import configure_logging
from stolentee.netsafe import UrlPolicy
from stolentee.runtime import Runtime, build_runtime
from stolentee.storage.base import Storage

log = logging.getLogger(__name__)

AppRole = Literal["api", "removal"]  # the full service, or the removal service only


def _api_services(runtime: Runtime, drain: Drain) -> Services:
    """The runtime, and what only the HTTP layer needs: admission, rate limits, prices."""
    settings = runtime.settings
    gate = RemovalGate(
        slots=settings.engine.max_in_flight,
        max_waiting=settings.api.max_queued_requests,
        wait_s=settings.api.queue_wait_s,
        deadline_s=settings.api.request_deadline_s,
    )
    pricebook = load_pricebook()
    return Services(
        runtime=runtime,
        removal=RemovalService(
            engine=runtime.engine,
            remover=runtime.providers,
            keys=runtime.keys,
            limiter=runtime.rate_limiter,
            gate=gate,
            premium_model=premium_model(settings),
        ),
        pricebook=pricebook,
        url_policy=UrlPolicy.from_settings(settings.api),
        started_at=time.monotonic(),
        latency=RouteLatency(),
        cost_projection=cost_projection(pricebook),
        drain=drain,
    )


async def _announce(services: Services) -> None:
    """Say at start-up what a newcomer needs to know: model state, who may call the API."""
    runtime = services.runtime
    try:
        await run_in_threadpool(runtime.engine.session)
    except StolenteeError as exc:
        log.warning("photos cannot be processed until the model is installed: %s", exc.detail)
    try:
        problem = await run_in_threadpool(migrate.schema_problem, runtime.database)
    except StolenteeError as exc:
        problem = exc.detail
    if problem is not None:
        log.error("not ready: %s", problem)
        return
    keys_configured = await run_in_threadpool(runtime.keys.keys_configured)
    if not keys_configured:
        log.warning(
            "no API key is configured: the removal API serves loopback clients only "
            "(create one with `stolentee keys create NAME` or set STOLENTEE_API_KEYS)"
        )
    worker = runtime.worker
    log.info(
        "stolentee %s ready (%s, role %s, database %s, storage %s, queue %s, removal %s, "
        "slots %d, %s)",
        __version__,
        runtime.settings.service.env.value,
        runtime.role,
        runtime.database.url.get_backend_name(),
        runtime.storage.name if runtime.has_storage else "none",
        runtime.queue.transport.backend if runtime.has_queue else "none",
        " -> ".join(runtime.providers.order()),
        services.removal.gate.slots,
        f"in-process worker x{worker.concurrency}" if worker is not None else "no worker",
    )


def create_app(
    settings: Settings,
    *,
    storage: Storage | None = None,
    database: Database | None = None,
    run_worker: bool | None = None,
    role: AppRole = "api",
) -> FastAPI:
    """The app; ``run_worker`` (default: ``STOLENTEE_RUN_WORKER``) starts an in-process worker.

    ``role="removal"`` is the standalone removal service (``stolentee removal-service``, the
    seed's rembg worker): only the removal API and health, the engine loaded once, no storage,
    queue or worker. ``storage`` and ``database`` let a test hand in its own.
    """
    service = settings.service
    drain = Drain(
        drain_s=service.shutdown_drain_s,
        marker=Path(service.drain_marker) if service.drain_marker else None,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await run_in_threadpool(
            functools.partial(
                build_runtime,
                settings,
                role,
                database=database,
                storage=storage,
                run_worker=False if role == "removal" else run_worker,
            )
        )
        try:
            services = _api_services(runtime, drain)
            app.state.services = services
            try:
                await _announce(services)
                runtime.start()
                drain.install()  # SIGTERM drains first (under uvicorn: the main thread)
                yield
            finally:
                drain.uninstall()
                services.removal.gate.close()
        finally:
            await run_in_threadpool(runtime.close)

    app = FastAPI(
        title="stolentee",
        version=__version__,
        summary="Print-on-demand backend: background removal, designs, CDN-ready storage.",
        lifespan=lifespan,
    )
    app.add_middleware(
        BodyLimitMiddleware,
        max_body_bytes=settings.api.max_body_bytes,
        body_read_timeout_s=settings.api.body_read_timeout_s,
        max_incomplete_uploads_per_client=settings.api.max_incomplete_uploads_per_client,
    )
    app.add_middleware(ConnectionCloseWhileDraining, drain=drain)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(metrics_routes.router)
    install_http_metrics(app)
    app.include_router(removebg.router)
    app.include_router(rembg.router)
    if settings.api.image_url_enabled:
        app.include_router(rembg.url_router)
    if role == "api":
        app.include_router(files.router)
        app.include_router(designs.router)
        app.include_router(uploads.router)
        app.include_router(stats.router)
        app.include_router(costs.router)
        app.include_router(ops.router)
        app.include_router(web.router)
    install_openapi(app, settings)
    return app


def app_from_env() -> FastAPI:
    """ASGI factory for ``uvicorn --factory`` (used by ``stolentee serve --workers N``)."""
    settings = Settings()
    configure_logging(settings.service)
    return create_app(settings)
