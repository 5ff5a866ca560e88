"""Live savings: what the running system saves, from what it measured.

:func:`live_profile` turns a period's removal statistics and the storage figures into a usage
profile scaled to a month; :func:`live_savings` prices it against the seed's counterfactual
("every image through Remove.bg, files on Supabase") with the same price book. What is compared,
and what is left out because both sides pay it, is in ``docs/costs.md`` ("How live savings are
computed").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from stolentee.costs.fmt import cents, usd
from stolentee.costs.measured import MeasuredRemoval, measured_removal, period_days_of
from stolentee.costs.model import CORRECTED, Policy, ScenarioCosts, compute, credits_for
from stolentee.costs.pricebook import Pricebook
from stolentee.costs.profile import (
    STORAGE_PROVIDERS,
    ZERO,
    Compute,
    Images,
    Profile,
    Removal,
    Service,
    Storage,
)
from stolentee.removal.stats.report import StatsReport
from stolentee.removal.stats.store import RemovalStatsStore

DAYS_PER_MONTH = Decimal(30)
BYTES_PER_GB = Decimal(10**9)  # providers bill decimal gigabytes
DEFAULT_PLANS: Mapping[str, str] = {
    "removebg": "subscription",
    "supabase": "pro",
    "railway": "pro",
}
COMPARED_LINES = (
    "removebg",
    "self-hosted-removal",
    "supabase",
    "cloudflare-r2",
    "railway-other",
)


def storage_provider_for(backend: str, endpoint: str = "") -> str:
    """The price-book storage provider for a configured storage backend (``STORAGE_BACKEND``
    and its endpoint): ``r2`` is Cloudflare R2; ``s3`` is Supabase when the endpoint is
    Supabase's S3 API, else a store whose cost is outside this model (MinIO, SeaweedFS...);
    ``local`` is the server's own disk, likewise outside it."""
    if backend == "r2":
        return "cloudflare-r2"
    if backend == "s3" and "supabase" in endpoint.lower():
        return "supabase"
    return "self-managed"


def live_profile(
    stats: StatsReport,
    *,
    period_days: int | None = None,
    storage_bytes: int = 0,
    storage_objects: int | None = None,
    storage_provider: str = "cloudflare-r2",
    egress_bytes: int = 0,
    class_a_operations: int = 0,
    class_b_operations: int = 0,
    self_hosted_services: Sequence[Service] = (),
    plans: Mapping[str, str] | None = None,
    name: str = "measured",
) -> Profile:
    """The measured usage as a monthly profile.

    ``stats``: the removal statistics of the period; ``period_days`` (default: the days of the
    statistics' range) scales counts to :data:`DAYS_PER_MONTH`. ``storage_bytes`` and
    ``storage_objects``: what the store holds now (not scaled); ``egress_bytes`` and the Class
    A/B operations: measured over the period (scaled). ``storage_provider``: one of
    :data:`STORAGE_PROVIDERS`. ``self_hosted_services``: the compute of the self-hosted removal.
    """
    if storage_provider not in STORAGE_PROVIDERS:
        raise ValueError(
            f"storage_provider must be one of {', '.join(STORAGE_PROVIDERS)}; "
            f"got {storage_provider!r}"
        )
    days = period_days if period_days is not None else period_days_of(stats)
    if days < 1:
        raise ValueError(f"period_days must be >= 1; got {days}")
    for label, value in (
        ("storage_bytes", storage_bytes),
        ("egress_bytes", egress_bytes),
        ("class_a_operations", class_a_operations),
        ("class_b_operations", class_b_operations),
        ("storage_objects", storage_objects or 0),
    ):
        if value < 0:
            raise ValueError(f"{label} must be >= 0; got {value}")
    factor = DAYS_PER_MONTH / days
    removal = measured_removal(stats)
    return Profile(
        name=name,
        title=f"Measured ({stats.start.isoformat()} .. {stats.end.isoformat()}, per month)",
        description=f"removal statistics of {days} day(s), scaled to {DAYS_PER_MONTH} days",
        source="removal statistics (removal_stats_daily) and storage figures",
        commercial=True,
        plans={**DEFAULT_PLANS, **(plans or {})},
        removal=Removal(
            removebg=Images(
                full=removal.paid_images * factor, credits=removal.credits_charged * factor
            ),
            self_hosted=Images(
                full=removal.self_hosted_images * factor,
                credits=removal.credits_avoided * factor,
            ),
        ),
        storage=Storage(
            provider=storage_provider,
            stored_gb=Decimal(storage_bytes) / BYTES_PER_GB,
            egress_gb=Decimal(egress_bytes) / BYTES_PER_GB * factor,
            class_a_operations=class_a_operations * factor,
            class_b_operations=class_b_operations * factor,
            objects=None if storage_objects is None else Decimal(storage_objects),
        ),
        compute=(
            Compute(provider="railway", services=tuple(self_hosted_services))
            if self_hosted_services
            else None
        ),
    )


def counterfactual_profile(
    measured: Profile, book: Pricebook, *, supabase_plan: str = "pro"
) -> Profile:
    """``measured`` as the seed's Scenario A would have served it: every image through
    Remove.bg (the credits charged plus those avoided), every file on Supabase, no self-hosted
    compute."""
    removal = measured.removal or Removal()
    paid, own = removal.removebg, removal.self_hosted
    storage = measured.storage or Storage(provider="supabase")
    return Profile(
        name="counterfactual",
        title="Counterfactual (Remove.bg + Supabase)",
        description="every removal through Remove.bg, files on Supabase",
        source=measured.source,
        commercial=measured.commercial,
        plans={**measured.plans, "supabase": supabase_plan},
        removal=Removal(
            removebg=Images(
                full=paid.full + own.full,
                preview=paid.preview + own.preview,
                credits=credits_for(book, paid) + credits_for(book, own),
            )
        ),
        storage=Storage(
            provider="supabase",
            stored_gb=storage.stored_gb,
            egress_gb=storage.egress_gb,
            class_a_operations=storage.class_a_operations,
            class_b_operations=storage.class_b_operations,
            objects=storage.objects,
        ),
    )


@dataclass(frozen=True, slots=True)
class LiveSavings:
    """The measured system against the counterfactual, per month (USD)."""

    start: date
    end: date
    period_days: int
    removal: MeasuredRemoval
    storage_provider: str
    storage_bytes: int
    actual: ScenarioCosts
    counterfactual: ScenarioCosts
    actual_monthly_usd: Decimal
    counterfactual_monthly_usd: Decimal

    @property
    def estimated_monthly_savings_usd(self) -> Decimal:
        return self.counterfactual_monthly_usd - self.actual_monthly_usd

    @property
    def self_hosted_share(self) -> Decimal | None:
        return self.removal.self_hosted_share

    @property
    def cost_optimized(self) -> bool:
        """Costs no more than the counterfactual, and self-hosted removal does some work."""
        share = self.self_hosted_share
        return (
            self.actual_monthly_usd <= self.counterfactual_monthly_usd
            and share is not None
            and share > 0
        )

    def breakdown(self) -> dict[str, Decimal]:
        """Monthly savings by area: removal, storage, compute (negative: a cost)."""

        def amount(costs: ScenarioCosts, keys: tuple[str, ...]) -> Decimal:
            return sum((line.amount for line in costs.lines if line.key in keys), ZERO)

        removal_keys = ("removebg", "self-hosted-removal")
        storage_keys = ("supabase", "cloudflare-r2", "railway-other")
        compute_keys = tuple(
            line.key
            for line in self.actual.lines
            if line.provider == "railway" and line.key not in ("railway-other", "railway-plan")
        )
        return {
            "removal": amount(self.counterfactual, removal_keys)
            - amount(self.actual, removal_keys),
            "storage": amount(self.counterfactual, storage_keys)
            - amount(self.actual, storage_keys),
            "compute": -amount(self.actual, compute_keys),
        }

    def as_dict(self) -> dict[str, Any]:
        savings = self.estimated_monthly_savings_usd
        share = self.self_hosted_share
        return {
            "period": {
                "from": self.start.isoformat(),
                "to": self.end.isoformat(),
                "days": self.period_days,
                "days_per_month": int(DAYS_PER_MONTH),
            },
            "images": {
                "self_hosted": self.removal.self_hosted_images,
                "removebg": self.removal.paid_images,
                "by_provider": dict(self.removal.by_provider),
            },
            "removebg_credits": {
                "charged": float(self.removal.credits_charged),
                "avoided": float(self.removal.credits_avoided),
                "counterfactual": float(self.removal.counterfactual_credits),
            },
            "self_hosted_share": None if share is None else float(round(share, 4)),
            "storage": {"provider": self.storage_provider, "bytes": self.storage_bytes},
            "actual_monthly_usd": float(self.actual_monthly_usd),
            "counterfactual_monthly_usd": float(self.counterfactual_monthly_usd),
            "estimated_monthly_savings_usd": float(savings),
            "estimated_monthly_savings": usd(savings),
            "cost_optimized": self.cost_optimized,
            "breakdown_usd": {key: float(value) for key, value in self.breakdown().items()},
            "lines": {
                "actual": [_line_dict(line) for line in _compared(self.actual)],
                "counterfactual": [_line_dict(line) for line in _compared(self.counterfactual)],
            },
            "policy": self.actual.policy.name,
            "notes": list(self.notes()),
        }

    def notes(self) -> tuple[str, ...]:
        """What the estimate leaves out or assumes."""
        notes = [
            f"Counts of {self.period_days} day(s) scaled to a {DAYS_PER_MONTH}-day month; "
            "stored bytes as they are now.",
            "Compared: background removal and storage (and the self-hosted removal's compute "
            "when given); payment fees, frontend and database are the same either way.",
        ]
        if not any(line.provider == "railway" for line in _compared(self.actual)):
            notes.append("The self-hosted removal's compute is not counted (no size given).")
        if self.storage_provider == "self-managed":
            notes.append("The store's own cost (disk, MinIO, SeaweedFS...) is not counted.")
        if not all(line.verified for line in _compared(self.counterfactual)):
            notes.append("Remove.bg's $0.20 per credit is the seed's figure, not verified.")
        return tuple(notes)


def _compared(costs: ScenarioCosts) -> tuple[Any, ...]:
    """The lines that differ between the measured system and the counterfactual: removal,
    storage, self-hosted compute (not a plan's fee, paid either way)."""
    return tuple(
        line
        for line in costs.lines
        if line.key in COMPARED_LINES or (line.provider == "railway" and line.key != "railway-plan")
    )


def _line_dict(line: Any) -> dict[str, Any]:
    return {
        "key": line.key,
        "name": line.name,
        "amount_usd": float(line.amount),
        "formula": line.formula,
        "verified": line.verified,
    }


def live_savings(
    book: Pricebook,
    stats: StatsReport,
    *,
    period_days: int | None = None,
    storage_bytes: int = 0,
    storage_objects: int | None = None,
    storage_provider: str = "cloudflare-r2",
    egress_bytes: int = 0,
    class_a_operations: int = 0,
    class_b_operations: int = 0,
    self_hosted_services: Sequence[Service] = (),
    plans: Mapping[str, str] | None = None,
    counterfactual_supabase_plan: str = "pro",
    policy: Policy = CORRECTED,
) -> LiveSavings:
    """The monthly savings of the measured system against "everything through Remove.bg,
    Supabase storage" (see the module docstring; arguments as :func:`live_profile`)."""
    measured = live_profile(
        stats,
        period_days=period_days,
        storage_bytes=storage_bytes,
        storage_objects=storage_objects,
        storage_provider=storage_provider,
        egress_bytes=egress_bytes,
        class_a_operations=class_a_operations,
        class_b_operations=class_b_operations,
        self_hosted_services=self_hosted_services,
        plans=plans,
    )
    counterfactual = counterfactual_profile(
        measured, book, supabase_plan=counterfactual_supabase_plan
    )
    actual_costs = compute(book, measured, policy)
    counterfactual_costs = compute(book, counterfactual, policy)
    return LiveSavings(
        start=stats.start,
        end=stats.end,
        period_days=period_days if period_days is not None else period_days_of(stats),
        removal=measured_removal(stats),
        storage_provider=storage_provider,
        storage_bytes=storage_bytes,
        actual=actual_costs,
        counterfactual=counterfactual_costs,
        actual_monthly_usd=cents(sum((ln.amount for ln in _compared(actual_costs)), ZERO)),
        counterfactual_monthly_usd=cents(
            sum((ln.amount for ln in _compared(counterfactual_costs)), ZERO)
        ),
    )


def recent_live_savings(
    book: Pricebook,
    store: RemovalStatsStore,
    *,
    storage_backend: str,
    storage_endpoint: str = "",
    days: int = 30,
) -> LiveSavings:
    """Live savings of this service over the last ``days`` UTC days (today included), from the
    removal statistics in the database: what ``/health/detailed`` and ``/v1/costs/report`` show."""
    end = store.today()
    stats = store.report(start=end - timedelta(days=days - 1), end=end)
    return live_savings(
        book,
        stats,
        period_days=days,
        storage_provider=storage_provider_for(storage_backend, storage_endpoint),
    )
