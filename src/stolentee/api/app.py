"""The FastAPI application: ``create_app(settings)`` builds it; the lifespan builds the services.

Long-lived objects (database pool, storage) are created once in the lifespan and handed to routes
through ``api/deps.py``. Tests may pass their own ``storage`` or ``database``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from stolentee import __version__
from stolentee.api.deps import Services
from stolentee.api.errors import install_error_handlers
from stolentee.api.routes import files, health
from stolentee.config import Settings
from stolentee.db import migrate
from stolentee.db.engine import Database
from stolentee.errors import DatabaseUnavailableError
from stolentee.logs import configure_logging
from stolentee.storage.base import Storage
from stolentee.storage.factory import build_storage

log = logging.getLogger(__name__)


async def _migrate_on_start(database: Database) -> None:
    """Apply pending migrations; an unreachable database is reported by /readyz, not fatal."""
    try:
        revision = await run_in_threadpool(migrate.upgrade, database)
        log.info("database schema at revision %s", revision)
    except DatabaseUnavailableError as exc:
        log.error("migrations not applied at start-up: %s", exc.detail)


def create_app(
    settings: Settings,
    *,
    storage: Storage | None = None,
    database: Database | None = None,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = database if database is not None else Database(settings=settings.database)
        try:
            if settings.database.auto_migrate:
                await _migrate_on_start(db)
            db.start_idle_reaper()
            app.state.services = Services(
                settings=settings,
                database=db,
                storage=storage if storage is not None else build_storage(settings),
                started_at=time.monotonic(),
            )
            log.info(
                "stolentee %s ready (%s, database %s, storage %s)",
                __version__,
                settings.service.env.value,
                db.url.get_backend_name(),
                app.state.services.storage.name,
            )
            yield
        finally:
            if database is None:
                db.dispose()

    app = FastAPI(
        title="stolentee",
        version=__version__,
        summary="Print-on-demand backend: background removal, designs, CDN-ready storage.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(files.router)

    @app.get("/", include_in_schema=False)
    async def index() -> dict[str, str]:
        return {"name": "stolentee", "version": __version__, "docs": "/docs", "health": "/health"}

    return app


def app_from_env() -> FastAPI:
    """ASGI factory for ``uvicorn --factory`` (used by ``stolentee serve --workers N``)."""
    settings = Settings()
    configure_logging(settings.service)
    return create_app(settings)
