"""``GET /v1/ops/summary``: everything the ops dashboard shows, in one JSON document.

Sections: ``health`` (every watched component now, and the latest notices), ``queue`` (depth,
in flight, oldest, job time percentiles), ``providers`` (chain, breakers, last probes, requests
and failures per day), ``removals`` (per day, self-hosted and Remove.bg), ``savings`` (the live
savings against Remove.bg, and what each day saved), ``latency`` (p50/p95 per route over the
last hour, this process) and ``costs`` (the cost model's monthly bill at 100 / 500 / 1,000 /
5,000 users). Every figure is measured or computed now, except ``costs``, which depends only on
the price book and the shipped profiles and is computed once per process (:func:`cost_projection`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from stolentee.alerts.changes import recent_notices
from stolentee.alerts.components import Components, provider_components, queue_component
from stolentee.api.deps import Services
from stolentee.costs.items import get_policy
from stolentee.costs.live import live_savings, storage_provider_for
from stolentee.costs.pricebook import Pricebook
from stolentee.costs.profile_files import default_profiles
from stolentee.costs.scale import scale_costs
from stolentee.jobs.figures import QueueFigures
from stolentee.removal.stats.report import StatsReport

DAYS = 30
COST_USERS = (100, 500, 1000, 5000)
SELF_HOSTED = frozenset({"local", "rembg-service"})
_WORST = {"pass": 0, "warn": 1, "fail": 2}


def summary(services: Services) -> dict[str, Any]:
    """The whole document (blocking: run it in a thread)."""
    runtime = services.runtime
    stats = runtime.removal_stats
    end = stats.today()
    report = stats.report(start=end - timedelta(days=DAYS - 1), end=end)
    queue = runtime.queue.figures() if runtime.has_queue else None  # read once, shown twice
    return {
        "generatedAt": _iso(datetime.now(UTC)),
        "health": _health(services, queue),
        "queue": _queue(services, queue),
        "providers": _providers(services, report),
        "removals": _removals(report),
        "savings": _savings(services, report),
        "latency": {
            "windowMinutes": services.latency.window_minutes,
            "scope": "this process",
            "routes": [figures.as_dict() for figures in services.latency.figures()],
        },
        "costs": services.cost_projection,
    }


def _health(services: Services, queue: QueueFigures | None) -> dict[str, Any]:
    runtime, settings = services.runtime, services.settings.alerts
    components = Components(
        database=runtime.database,
        settings=settings,
        storage=runtime.storage if runtime.has_storage else None,
        disk=runtime.disk if runtime.has_storage else None,
    ).check()
    if queue is not None:
        components.append(queue_component(queue, settings))
    components += provider_components(runtime.providers)
    worst = max((health.status for health in components), key=_WORST.__getitem__)
    return {
        "status": worst,
        "components": [health.as_dict() for health in components],
        "notices": recent_notices(runtime.database, limit=10),
        "noticesEnabled": services.settings.alerts.enabled,
    }


def _queue(services: Services, figures: QueueFigures | None) -> dict[str, Any]:
    if figures is None:
        return {"backend": None}
    return {"backend": services.runtime.queue.transport.backend, **figures.as_dict()}


def _providers(services: Services, report: StatsReport) -> dict[str, Any]:
    chain = services.runtime.providers
    model = services.settings.engine.model
    entries = []
    for entry in chain.snapshot():
        period = report.provider(entry["name"])
        entries.append(
            {
                **_camel(entry),
                "model": model if entry["name"] == "local" else None,
                "requests": 0 if period is None else period.requests,
                "failures": 0 if period is None else period.failures,
                "latencyP95Ms": None if period is None else period.latency_p95_ms,
            }
        )
    days = [
        {
            "day": day.day.isoformat(),
            "providers": {
                p.provider: {"requests": p.requests, "failures": p.failures} for p in day.providers
            },
        }
        for day in report.days
    ]
    return {
        "chain": list(chain.order()),
        "premiumChain": list(chain.order(premium=True)),
        "providers": entries,
        "days": days,
    }


def _removals(report: StatsReport) -> dict[str, Any]:
    by_day = {day.day: day for day in report.days}
    days = []
    for offset in range(DAYS):  # every day of the period, zeros included: a chart's x axis
        day = report.start + timedelta(days=offset)
        stats = by_day.get(day)
        self_hosted = removebg = failures = 0
        if stats is not None:
            for provider in stats.providers:
                if provider.provider in SELF_HOSTED:
                    self_hosted += provider.successes
                elif provider.provider == "removebg":
                    removebg += provider.successes
                failures += provider.failures
        days.append(
            {
                "day": day.isoformat(),
                "removals": self_hosted + removebg,
                "selfHosted": self_hosted,
                "removebg": removebg,
                "failures": failures,
            }
        )
    return {
        "from": report.start.isoformat(),
        "to": report.end.isoformat(),
        "total": sum(day["removals"] for day in days),
        "failures": report.totals.failures,
        "days": days,
    }


def _savings(services: Services, report: StatsReport) -> dict[str, Any]:
    live = live_savings(
        services.pricebook,
        report,
        period_days=DAYS,
        storage_provider=storage_provider_for(
            services.settings.storage.backend, services.settings.storage.active_endpoint
        ),
    )
    share = live.self_hosted_share
    by_day = {day.day: day.totals for day in report.days}
    days = []
    for offset in range(DAYS):
        day = report.start + timedelta(days=offset)
        totals = by_day.get(day)
        days.append(
            {
                "day": day.isoformat(),
                "creditsAvoided": 0.0 if totals is None else round(totals.credits_avoided, 2),
                "savedUsd": 0.0 if totals is None else round(totals.usd_avoided, 2),
                "chargedUsd": 0.0 if totals is None else round(totals.usd_charged, 2),
            }
        )
    return {
        "periodDays": DAYS,
        "actualMonthlyUsd": float(live.actual_monthly_usd),
        "counterfactualMonthlyUsd": float(live.counterfactual_monthly_usd),
        "estimatedMonthlySavingsUsd": float(live.estimated_monthly_savings_usd),
        "selfHostedShare": None if share is None else float(share),
        "costOptimized": live.cost_optimized,
        "savedUsd": round(report.totals.usd_avoided, 2),
        "creditsAvoided": round(report.totals.credits_avoided, 2),
        "days": days,
    }


def cost_projection(book: Pricebook) -> dict[str, Any]:
    """The ``costs`` section: it depends only on the price book and the shipped profiles, so
    the API computes it once at start-up."""
    report = scale_costs(book, default_profiles(), COST_USERS, policy=get_policy("corrected"))
    scenarios: dict[str, dict[str, Any]] = {}
    for point in report.points:
        scenario = scenarios.setdefault(
            point.name, {"name": point.name, "label": point.label, "points": []}
        )
        scenario["points"].append(
            {
                "users": point.users,
                "monthlyUsd": float(point.total),
                "infrastructureUsd": float(point.infrastructure),
                "perUserUsd": round(float(point.per_user_total), 4),
                "instances": float(point.instances),
                "railwayPlan": point.railway_plan,
            }
        )
    return {"policy": "corrected", "users": list(COST_USERS), "scenarios": list(scenarios.values())}


def _camel(entry: dict[str, Any]) -> dict[str, Any]:
    """The chain's snapshot (snake_case, as ``/health/detailed`` shows it) in this document's
    camelCase."""

    def name(key: str) -> str:
        head, *rest = key.split("_")
        return head + "".join(part.title() for part in rest)

    return {
        name(key): _camel(value) if isinstance(value, dict) else value
        for key, value in entry.items()
    }


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
