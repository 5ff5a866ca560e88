"""Health endpoints (seed section 2.5) and Kubernetes-style probes.

- ``GET /health``: liveness for load balancers and Railway's health check; never touches the
  database.
- ``GET /health/detailed``: the seed's detailed report, every figure measured now.
- ``GET /livez``: the process answers. ``GET /readyz``: the database and the storage (in the
  roles that store objects) answer; 503 otherwise, and at once while the process drains on
  SIGTERM (:mod:`stolentee.api.drain`).
  Both in ``application/health+json`` (status ``pass``/``fail``, ``checks``).
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

import psutil
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from stolentee import __version__
from stolentee.api.deps import ServicesDep
from stolentee.backup.history import last_backup
from stolentee.costs.live import recent_live_savings
from stolentee.db import migrate
from stolentee.db.engine import Database
from stolentee.errors import StolenteeError
from stolentee.removal import models
from stolentee.storage.base import Storage
from stolentee.storage.diskspace import VolumeFigures

router = APIRouter(tags=["health"])

HEALTH_JSON = "application/health+json"
# The seed's database target: query latency p95 < 100 ms. Slower than that now is "degraded".
DEGRADED_DB_LATENCY_MS = 100.0
DEGRADED_MEMORY_PERCENT = 90.0
_MB = 1024 * 1024


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _database_check(database: Database) -> tuple[float, str | None]:
    """Latency of a round trip in ms, and why the schema cannot serve (``None``: it can)."""
    latency_ms = database.ping()
    return latency_ms, migrate.schema_problem(database)


async def _ping_database(services: ServicesDep) -> tuple[float | None, str | None]:
    """Latency in ms, or ``None`` and the reason the database cannot serve requests."""
    try:
        latency_ms, problem = await run_in_threadpool(_database_check, services.runtime.database)
    except StolenteeError as exc:
        return None, exc.detail
    except Exception as exc:  # noqa: BLE001 - any driver failure means "not ready", reported
        return None, f"{type(exc).__name__}: {exc}"
    return (latency_ms, None) if problem is None else (None, problem)


def _storage_check(storage: Storage) -> float:
    started = time.perf_counter()
    storage.check()
    return (time.perf_counter() - started) * 1000


async def _ping_storage(services: ServicesDep) -> tuple[float | None, str | None]:
    """Latency in ms of the storage's own check, or ``None`` and why it cannot serve."""
    try:
        return await run_in_threadpool(_storage_check, services.runtime.storage), None
    except StolenteeError as exc:
        return None, exc.detail
    except Exception as exc:  # noqa: BLE001 - any backend failure means "not ready", reported
        return None, f"{type(exc).__name__}: {exc}"


def _disk_check(services: ServicesDep) -> tuple[dict[str, Any], list[VolumeFigures]]:
    """Free space against STOLENTEE_MIN_FREE_DISK_MB (``fail`` below the floor), and the
    figures of every watched filesystem."""
    error: str | None = None
    try:
        volumes = services.runtime.disk.figures()
    except OSError as exc:
        volumes, error = [], f"cannot measure free disk space: {exc.strerror or exc}"
    low = [volume.name for volume in volumes if volume.low]
    if low:
        error = f"free disk space below the floor on: {', '.join(low)}"
    check: dict[str, Any] = {
        "componentType": "system",
        "observedUnit": "MiB",
        "observedValue": min((round(v.free_bytes / _MB, 1) for v in volumes), default=None),
        "status": "pass" if error is None else "fail",
        "time": _now_iso(),
    }
    if error is not None:
        check["output"] = error
    return check, volumes


def _check(component_type: str, latency_ms: float | None, error: str | None) -> dict[str, Any]:
    check: dict[str, Any] = {
        "componentType": component_type,
        "observedUnit": "ms",
        "observedValue": None if latency_ms is None else round(latency_ms, 2),
        "status": "pass" if error is None else "fail",
        "time": _now_iso(),
    }
    if error is not None:
        check["output"] = error
    return check


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok", "timestamp": _now_iso()}


_HEALTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Pass", "content": {HEALTH_JSON: {"schema": {"type": "object"}}}},
    503: {"description": "Fail", "content": {HEALTH_JSON: {"schema": {"type": "object"}}}},
}


@router.get("/livez", response_class=JSONResponse, responses=_HEALTH_RESPONSES)
async def livez() -> JSONResponse:
    return JSONResponse({"status": "pass", "version": __version__}, media_type=HEALTH_JSON)


@router.get("/readyz", response_class=JSONResponse, responses=_HEALTH_RESPONSES)
async def readyz(services: ServicesDep) -> JSONResponse:
    if services.drain.draining:  # leave the load balancer's rotation before stopping
        draining = {"status": "fail", "version": __version__, "output": "draining: shutting down"}
        return JSONResponse(draining, status_code=503, media_type=HEALTH_JSON)
    checks = {"database": _check("datastore", *await _ping_database(services))}
    if services.runtime.has_storage:  # the removal service stores nothing
        checks["storage"] = _check("datastore", *await _ping_storage(services))
        checks["disk"], _ = await run_in_threadpool(_disk_check, services)
    failed = [name for name, check in checks.items() if "output" in check]
    body: dict[str, Any] = {
        "status": "fail" if failed else "pass",
        "version": __version__,
        "checks": {
            f"{name}:{'free' if name == 'disk' else 'responseTime'}": [check]
            for name, check in checks.items()
        },
    }
    if failed:
        body["output"] = f"{' and '.join(failed)} not ready"
    return JSONResponse(body, status_code=503 if failed else 200, media_type=HEALTH_JSON)


def _memory() -> dict[str, Any]:
    process = psutil.Process(os.getpid()).memory_info()
    system = psutil.virtual_memory()
    return {
        "used": round(process.rss / _MB, 1),
        "total": round(system.total / _MB, 1),
        "process": {"rss": round(process.rss / _MB, 1), "vms": round(process.vms / _MB, 1)},
        "system": {
            "used": round((system.total - system.available) / _MB, 1),
            "available": round(system.available / _MB, 1),
            "total": round(system.total / _MB, 1),
            "percent": system.percent,
        },
    }


def _cpu() -> dict[str, Any]:
    return {
        "loadAverage": [round(value, 2) for value in os.getloadavg()],
        "count": os.cpu_count(),
    }


def _removal_section(services: ServicesDep) -> dict[str, Any]:
    """The removal provider and whether its model file is there (photos need it)."""
    engine = services.removal.engine.settings
    spec = models.MODELS.get(engine.model)
    state = models.model_state(engine.models_dir, spec, verify=False) if spec else None
    gate = services.removal.gate
    chain = services.runtime.providers
    return {
        "provider": chain.order()[0],
        "chain": list(chain.order()),
        "premiumChain": list(chain.order(premium=True)),
        "providers": chain.snapshot(),
        "model": engine.model,
        "modelInstalled": state is models.ModelState.INSTALLED,
        "slots": gate.slots,
        "running": gate.running,
        "waiting": gate.waiting,
    }


async def _savings(services: ServicesDep) -> dict[str, Any]:
    """From the cost model on the last 30 days of measured removals (never a constant); null
    with the reason when it cannot be computed now."""
    try:
        live = await run_in_threadpool(
            lambda: recent_live_savings(
                services.pricebook,
                services.runtime.removal_stats,
                storage_backend=services.settings.storage.backend,
                storage_endpoint=services.settings.storage.active_endpoint,
            )
        )
    except StolenteeError as exc:
        return {"costOptimized": None, "estimatedMonthlySavings": None, "costError": exc.detail}
    return {
        "costOptimized": live.cost_optimized,
        "estimatedMonthlySavings": float(live.estimated_monthly_savings_usd),
    }


async def _queue_section(services: ServicesDep) -> dict[str, Any]:
    if not services.runtime.has_queue:  # the removal service runs no jobs
        return {"backend": None, "inProcessWorker": False}
    section: dict[str, Any] = {
        "backend": services.runtime.queue.transport.backend,
        "inProcessWorker": services.runtime.worker is not None,
    }
    try:
        figures = await run_in_threadpool(services.runtime.queue.figures)
    except StolenteeError as exc:
        section["error"] = exc.detail
    except Exception as exc:  # noqa: BLE001 - reported in the health document, never raised
        section["error"] = f"{type(exc).__name__}: {exc}"
    else:
        section.update(figures.as_dict())
    return section


def _backup_section(services: ServicesDep) -> dict[str, Any]:
    """The last recorded ``stolentee backup create``: pass while younger than
    ``STOLENTEE_BACKUP_MAX_AGE_H``, warn past it; ``none`` when no backup was ever recorded."""
    last = last_backup(services.runtime.database)
    if last is None:
        return {"status": "none", "lastBackupAt": None, "ageHours": None}
    age_h = last.age_s() / 3600
    limit_h = services.settings.backup.max_age_h
    return {
        "status": "pass" if age_h <= limit_h else "warn",
        "id": last.id,
        "target": last.target,
        "lastBackupAt": last.finished_at.isoformat(),
        "ageHours": round(age_h, 2),
        "maxAgeHours": limit_h,
    }


@router.get(
    "/health/detailed",
    responses={503: {"description": "Unhealthy", "content": {"application/json": {}}}},
)
async def health_detailed(services: ServicesDep) -> JSONResponse:
    latency_ms, error = await _ping_database(services)
    figures = services.runtime.database.figures()
    memory = _memory()
    database: dict[str, Any] = {
        "status": "healthy" if error is None else "unhealthy",
        "latency": None if latency_ms is None else round(latency_ms, 2),
        "backend": services.runtime.database.url.get_backend_name(),
        "pool": figures.as_dict(),
    }
    if error is not None:
        database["error"] = error

    storage_latency_ms, storage_error = None, None
    storage: dict[str, Any] = {"status": "not used", "backend": None, "latency": None}
    if services.runtime.has_storage:  # the removal service stores nothing
        storage_latency_ms, storage_error = await _ping_storage(services)
        storage = {
            "status": "healthy" if storage_error is None else "unhealthy",
            "backend": services.runtime.storage.name,
            "latency": None if storage_latency_ms is None else round(storage_latency_ms, 2),
        }
        if storage_error is not None:
            storage["error"] = storage_error
        disk, volumes = await run_in_threadpool(_disk_check, services)
        storage["disk"] = {
            "status": disk["status"],
            "minFreeMb": services.settings.service.min_free_disk_mb,
            "volumes": [volume.as_dict() for volume in volumes],
        }
        if "output" in disk:
            storage_error = storage["error"] = disk["output"]
            storage["status"] = "unhealthy"

    if error is not None or storage_error is not None:
        status = "unhealthy"
    elif (
        (latency_ms is not None and latency_ms > DEGRADED_DB_LATENCY_MS)
        or figures.waiting > 0
        or memory["system"]["percent"] >= DEGRADED_MEMORY_PERCENT
    ):
        status = "degraded"
    else:
        status = "healthy"

    removal = await run_in_threadpool(_removal_section, services)
    body = {
        "status": status,
        "timestamp": _now_iso(),
        "version": __version__,
        "environment": services.settings.service.env.value,
        "uptime": round(time.monotonic() - services.started_at, 1),
        "memory": memory,
        "cpu": _cpu(),
        "database": database,
        "storage": storage,
        "queue": await _queue_section(services),
        "removal": removal,
        "backup": await run_in_threadpool(_backup_section, services),
        "infrastructure": {
            # A self-hosted provider (engine or removal service) leads the chain and is up.
            "rembgSelfHosted": services.runtime.providers.self_hosted_first_and_healthy(),
            # True when an S3-compatible bucket (R2 or another) is the store and answers now.
            "r2Storage": storage["backend"] == "s3" and storage_error is None,
            **await _savings(services),
        },
    }
    return JSONResponse(body, status_code=503 if status == "unhealthy" else 200)
