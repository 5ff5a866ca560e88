"""The FastAPI application: ``create_app(settings)`` builds it; the lifespan builds the services.

Long-lived objects (database pool, storage, removal engine, key store) are created once in the
lifespan and handed to routes through ``api/deps.py``. Tests may pass their own ``storage`` or
``database``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from stolentee import __version__
from stolentee.api.admission import RemovalGate
from stolentee.api.deps import Services
from stolentee.api.errors import install_error_handlers
from stolentee.api.limits import BodyLimitMiddleware
from stolentee.api.removal_service import RemovalService
from stolentee.api.routes import (
    costs,
    designs,
    files,
    health,
    rembg,
    removebg,
    stats,
    uploads,
    web,
)
from stolentee.api.routes import metrics as metrics_routes
from stolentee.api.routes.metrics import install_http_metrics
from stolentee.callbacks import CallbackSender
from stolentee.config import Settings
from stolentee.costs.pricebook import load_pricebook
from stolentee.db import migrate
from stolentee.db.engine import Database
from stolentee.designs import DesignStore
from stolentee.errors import DatabaseUnavailableError, StolenteeError
from stolentee.jobs.handlers import PERMANENT_ERRORS, build_handlers, build_queue
from stolentee.jobs.transport import build_transport
from stolentee.jobs.worker import Worker
from stolentee.keys.ratelimit import MegapixelRateLimiter
from stolentee.keys.store import KeyStore
from stolentee.logs import configure_logging
from stolentee.metrics import Metrics
from stolentee.netsafe import UrlPolicy
from stolentee.removal.engine import RemovalEngine
from stolentee.removal.remote import build_http_client
from stolentee.removal.router import build_chain
from stolentee.removal.stats import SERVICE_FLUSH_INTERVAL_S, RemovalStatsStore
from stolentee.storage.base import Storage
from stolentee.storage.factory import build_storage
from stolentee.storage.s3 import S3Storage

log = logging.getLogger(__name__)

AppRole = Literal["api", "removal"]  # the full service, or the removal service only

# Within uvicorn's 30 s graceful shutdown and Docker's 10 s kill delay: jobs still running after
# this are handed back to the queue for another worker.
WORKER_STOP_TIMEOUT_S = 8.0


async def _migrate_on_start(database: Database) -> None:
    """Apply pending migrations; an unreachable database is reported by /readyz, not fatal."""
    try:
        revision = await run_in_threadpool(migrate.upgrade, database)
        log.info("database schema at revision %s", revision)
    except DatabaseUnavailableError as exc:
        log.error("migrations not applied at start-up: %s", exc.detail)


def _build_services(
    settings: Settings, database: Database, storage: Storage | None, *, run_worker: bool
) -> Services:
    callbacks = CallbackSender.from_settings(settings.api)  # checks the settings first
    engine = RemovalEngine(settings=settings.engine)
    keys = KeyStore(database=database, static_keys=settings.api.static_keys)
    gate = RemovalGate(
        slots=settings.engine.max_in_flight,
        max_waiting=settings.api.max_queued_requests,
        wait_s=settings.api.queue_wait_s,
        deadline_s=settings.api.request_deadline_s,
    )
    limiter = MegapixelRateLimiter(settings.api.rate_limit_megapixels_per_minute)
    removal_stats = RemovalStatsStore(database=database, flush_interval_s=SERVICE_FLUSH_INTERVAL_S)
    metrics = Metrics(multiprocess_dir=settings.service.metrics_multiprocess_dir)
    metrics.instrument_database(database)
    http_client = build_http_client(settings.removal)
    chain = build_chain(
        settings.removal,
        engine=engine,
        http_client=http_client,
        stats=metrics.removal_sink(removal_stats),
    )
    store = storage if storage is not None else build_storage(settings)
    designs = DesignStore(database=database)
    queue = build_queue(
        database=database,
        transport=build_transport(settings),
        settings=settings.queue,
        callbacks=callbacks,
    )
    metrics.watch(queue=queue, database=database)
    if isinstance(store, S3Storage):
        metrics.instrument_s3(store)
    worker = None
    if run_worker:
        worker = Worker(
            queue=queue,
            handlers=metrics.timed_handlers(
                build_handlers(
                    designs=designs, storage=store, remover=chain, queue=queue, callbacks=callbacks
                )
            ),
            permanent_errors=PERMANENT_ERRORS,
            name="stolentee-inprocess-worker",
        )
    return Services(
        settings=settings,
        database=database,
        storage=store,
        keys=keys,
        removal=RemovalService(engine=engine, remover=chain, keys=keys, limiter=limiter, gate=gate),
        removal_stats=removal_stats,
        providers=chain,
        http_client=http_client,
        pricebook=load_pricebook(),
        metrics=metrics,
        url_policy=UrlPolicy.from_settings(settings.api),
        designs=designs,
        queue=queue,
        callbacks=callbacks,
        worker=worker,
        started_at=time.monotonic(),
    )


async def _announce(services: Services) -> None:
    """Say at start-up what a newcomer needs to know: model state, who may call the API."""
    settings = services.settings
    engine = services.removal.engine
    try:
        await run_in_threadpool(engine.session)
    except StolenteeError as exc:
        log.warning("photos cannot be processed until the model is installed: %s", exc.detail)
    try:
        problem = await run_in_threadpool(migrate.schema_problem, services.database)
    except StolenteeError as exc:
        problem = exc.detail
    if problem is not None:
        log.error("not ready: %s", problem)
        return
    keys_configured = await run_in_threadpool(services.keys.keys_configured)
    if not keys_configured:
        log.warning(
            "no API key is configured: the removal API serves loopback clients only "
            "(create one with `stolentee keys create NAME` or set STOLENTEE_API_KEYS)"
        )
    log.info(
        "stolentee %s ready (%s, database %s, storage %s, queue %s, removal %s, slots %d, %s)",
        __version__,
        settings.service.env.value,
        services.database.url.get_backend_name(),
        services.storage.name,
        services.queue.transport.backend,
        " -> ".join(services.providers.order()),
        services.removal.gate.slots,
        f"in-process worker x{services.worker.concurrency}"
        if services.worker is not None
        else "no in-process worker",
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
    seed's rembg worker): only the removal API and health, the engine loaded once, no worker.
    """
    if role == "removal":
        run_worker = False

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = database if database is not None else Database(settings=settings.database)
        try:
            if settings.database.auto_migrate:
                await _migrate_on_start(db)
            db.start_idle_reaper()
            worker_wanted = settings.queue.run_worker if run_worker is None else run_worker
            services = _build_services(settings, db, storage, run_worker=worker_wanted)
            app.state.services = services
            await _announce(services)
            services.providers.start_probes()
            if services.worker is not None:
                services.worker.start()
            try:
                yield
            finally:
                if services.worker is not None:
                    await run_in_threadpool(services.worker.stop, WORKER_STOP_TIMEOUT_S)
                services.providers.stop()
                services.removal_stats.close()
                services.http_client.close()
                services.removal.gate.close()
                services.queue.transport.close()
                if storage is None:  # built here, so released here
                    services.storage.close()
        finally:
            if database is None:
                db.dispose()

    app = FastAPI(
        title="stolentee",
        version=__version__,
        summary="Print-on-demand backend: background removal, designs, CDN-ready storage.",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.api.max_body_bytes)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(metrics_routes.router)
    install_http_metrics(app)
    app.include_router(removebg.router)
    app.include_router(rembg.router)
    if role == "api":
        app.include_router(files.router)
        app.include_router(designs.router)
        app.include_router(uploads.router)
        app.include_router(stats.router)
        app.include_router(costs.router)
        app.include_router(web.router)

    return app


def app_from_env() -> FastAPI:
    """ASGI factory for ``uvicorn --factory`` (used by ``stolentee serve --workers N``)."""
    settings = Settings()
    configure_logging(settings.service)
    return create_app(settings)
