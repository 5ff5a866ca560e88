"""FastAPI dependencies: hand the long-lived objects built in the lifespan to route handlers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import httpx
from fastapi import Depends, Request

from stolentee.api.removal_service import RemovalService
from stolentee.callbacks import CallbackSender
from stolentee.config import Settings
from stolentee.costs.pricebook import Pricebook
from stolentee.db.engine import Database
from stolentee.designs import DesignStore
from stolentee.jobs.queue import JobQueue
from stolentee.jobs.worker import Worker
from stolentee.keys.store import KeyStore
from stolentee.metrics import Metrics
from stolentee.netsafe import UrlPolicy
from stolentee.removal.router import ProviderChain
from stolentee.removal.stats import RemovalStatsStore
from stolentee.storage.base import Storage


@dataclass(slots=True)
class Services:
    """Everything a request may need, built once per process by ``create_app``'s lifespan."""

    settings: Settings
    database: Database
    storage: Storage
    keys: KeyStore
    removal: RemovalService
    removal_stats: RemovalStatsStore  # per-provider counters in the database
    providers: ProviderChain  # local engine / removal service / Remove.bg, with breakers
    http_client: httpx.Client  # shared by the remote providers
    pricebook: Pricebook  # prices with sources: live savings in health and /v1/costs
    metrics: Metrics  # this process's Prometheus metrics (GET /metrics)
    url_policy: UrlPolicy
    designs: DesignStore
    queue: JobQueue
    callbacks: CallbackSender  # checks callback URLs at upload (workers deliver)
    worker: Worker | None  # the in-process worker, when this process runs one
    started_at: float  # time.monotonic() at start-up


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_settings(services: Annotated[Services, Depends(get_services)]) -> Settings:
    return services.settings


def get_database(services: Annotated[Services, Depends(get_services)]) -> Database:
    return services.database


def get_storage(services: Annotated[Services, Depends(get_services)]) -> Storage:
    return services.storage


ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]
StorageDep = Annotated[Storage, Depends(get_storage)]
