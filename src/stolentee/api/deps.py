"""FastAPI dependencies: hand the long-lived objects built in the lifespan to route handlers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from stolentee.api.drain import Drain
from stolentee.api.latency import RouteLatency
from stolentee.api.removal_service import RemovalService
from stolentee.config import Settings
from stolentee.costs.pricebook import Pricebook
from stolentee.db.engine import Database
from stolentee.netsafe import UrlPolicy
from stolentee.runtime import Runtime
from stolentee.storage.base import Storage


@dataclass(slots=True)
class Services:
    """What a request may need: the process's runtime and the HTTP layer's own parts."""

    runtime: Runtime  # database, storage, engine, providers, queue, keys, metrics, worker...
    removal: RemovalService  # the removal use case behind the routes, with its admission gate
    pricebook: Pricebook  # prices with sources: live savings in health and /v1/costs
    url_policy: UrlPolicy  # vets callback URLs at upload
    started_at: float  # time.monotonic() at start-up
    latency: RouteLatency  # per-route latency over the last hour (the ops dashboard)
    cost_projection: dict[str, Any]  # the cost model at 100..5,000 users (the ops dashboard)
    drain: Drain  # SIGTERM: /readyz 503 and Connection: close before the server stops

    @property
    def settings(self) -> Settings:
        return self.runtime.settings


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_settings(services: Annotated[Services, Depends(get_services)]) -> Settings:
    return services.settings


def get_database(services: Annotated[Services, Depends(get_services)]) -> Database:
    return services.runtime.database


def get_storage(services: Annotated[Services, Depends(get_services)]) -> Storage:
    return services.runtime.storage


ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]
StorageDep = Annotated[Storage, Depends(get_storage)]
