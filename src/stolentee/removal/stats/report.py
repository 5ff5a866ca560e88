"""What the removal statistics say: per-provider counters over days, latency percentiles from the
histogram, and the report the API and the CLI render."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from stolentee.db.models import (
    REMOVAL_FAILURE_KINDS,
    REMOVAL_LATENCY_BUCKETS,
)
from stolentee.removal.stats.buckets import (
    LATENCY_CEILING_MS,
    LATENCY_FLOOR_MS,
    LATENCY_RATIO,
    PERCENTILES,
    percentile,
)
from stolentee.removal.stats.columns import (
    BUCKET_COLUMNS,
    FAILURE_COLUMNS,
)


@dataclass(frozen=True, slots=True)
class Counters:
    """Raw counters of one or more ``removal_stats_daily`` rows; add them to merge."""

    requests: int = 0
    successes: int = 0
    premium_requests: int = 0
    failures: tuple[int, ...] = (0,) * len(REMOVAL_FAILURE_KINDS)
    latency_buckets: tuple[int, ...] = (0,) * REMOVAL_LATENCY_BUCKETS
    latency_ms_sum: float = 0.0
    megapixels: float = 0.0
    credits_charged: float = 0.0
    credits_avoided: float = 0.0

    def __add__(self, other: Counters) -> Counters:
        return Counters(
            requests=self.requests + other.requests,
            successes=self.successes + other.successes,
            premium_requests=self.premium_requests + other.premium_requests,
            failures=tuple(a + b for a, b in zip(self.failures, other.failures, strict=True)),
            latency_buckets=tuple(
                a + b for a, b in zip(self.latency_buckets, other.latency_buckets, strict=True)
            ),
            latency_ms_sum=self.latency_ms_sum + other.latency_ms_sum,
            megapixels=self.megapixels + other.megapixels,
            credits_charged=self.credits_charged + other.credits_charged,
            credits_avoided=self.credits_avoided + other.credits_avoided,
        )

    @classmethod
    def from_row(cls, row: Any) -> Counters:
        """From a ``removal_stats_daily`` row mapping (PostgreSQL may give Decimal sums)."""
        requests = int(row["requests"])
        return cls(
            requests=requests,
            successes=int(row["successes"]),
            premium_requests=requests if row["premium"] else 0,
            failures=tuple(int(row[name]) for name in FAILURE_COLUMNS),
            latency_buckets=tuple(int(row[name]) for name in BUCKET_COLUMNS),
            latency_ms_sum=float(row["latency_ms_sum"]),
            megapixels=float(row["megapixels"]),
            credits_charged=float(row["credits_charged"]),
            credits_avoided=float(row["credits_avoided"]),
        )


def sum_counters(items: Iterable[Counters]) -> Counters:
    total = Counters()
    for item in items:
        total = total + item
    return total


@dataclass(frozen=True, slots=True)
class ProviderStats:
    """One provider's figures over a period (``provider="total"`` for all of them together)."""

    provider: str
    requests: int
    successes: int
    failures: int
    failures_by_kind: dict[str, int]
    premium_requests: int
    success_rate: float | None  # successes / requests; None without requests
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    latency_mean_ms: float | None
    megapixels: float
    credits_charged: float  # Remove.bg credits actually charged (its X-Credits-Charged)
    credits_avoided: float  # credits Remove.bg would have charged for self-hosted successes
    usd_charged: float
    usd_avoided: float

    @classmethod
    def from_counters(
        cls, provider: str, counters: Counters, *, usd_per_credit: float
    ) -> ProviderStats:
        requests = counters.requests
        p50, p95, p99 = (percentile(counters.latency_buckets, q) for q in PERCENTILES)
        return cls(
            provider=provider,
            requests=requests,
            successes=counters.successes,
            failures=sum(counters.failures),
            failures_by_kind=dict(zip(REMOVAL_FAILURE_KINDS, counters.failures, strict=True)),
            premium_requests=counters.premium_requests,
            success_rate=counters.successes / requests if requests else None,
            latency_p50_ms=p50,
            latency_p95_ms=p95,
            latency_p99_ms=p99,
            latency_mean_ms=counters.latency_ms_sum / requests if requests else None,
            megapixels=counters.megapixels,
            credits_charged=counters.credits_charged,
            credits_avoided=counters.credits_avoided,
            usd_charged=counters.credits_charged * usd_per_credit,
            usd_avoided=counters.credits_avoided * usd_per_credit,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "requests": self.requests,
            "successes": self.successes,
            "failures": self.failures,
            "failures_by_kind": dict(self.failures_by_kind),
            "premium_requests": self.premium_requests,
            "success_rate": _rounded(self.success_rate, 4),
            "latency_ms": {
                "p50": _rounded(self.latency_p50_ms, 1),
                "p95": _rounded(self.latency_p95_ms, 1),
                "p99": _rounded(self.latency_p99_ms, 1),
                "mean": _rounded(self.latency_mean_ms, 1),
            },
            "megapixels": round(self.megapixels, 3),
            "credits_charged": round(self.credits_charged, 4),
            "credits_avoided": round(self.credits_avoided, 4),
            "usd_charged": round(self.usd_charged, 2),
            "usd_avoided": round(self.usd_avoided, 2),
        }


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


TOTAL = "total"


@dataclass(frozen=True, slots=True)
class DayStats:
    """One UTC day: each provider that made an attempt that day, and their totals."""

    day: date
    providers: tuple[ProviderStats, ...]
    totals: ProviderStats

    def as_dict(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "providers": [p.as_dict() for p in self.providers],
            "totals": self.totals.as_dict(),
        }


@dataclass(frozen=True, slots=True)
class ModelStats:
    """Successful removals of one model over the period (``none``: no model ran, as the colour
    key alone or Remove.bg). ``credits_avoided`` and ``usd_saved`` are what Remove.bg would
    have charged for the self-hosted ones: premium removals served here count as well."""

    model: str
    providers: tuple[str, ...]
    removals: int
    premium_removals: int
    mean_latency_ms: float
    credits_avoided: float
    usd_saved: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "providers": list(self.providers),
            "removals": self.removals,
            "premium_removals": self.premium_removals,
            "mean_latency_ms": round(self.mean_latency_ms, 1),
            "credits_avoided": round(self.credits_avoided, 4),
            "usd_saved": round(self.usd_saved, 4),
        }


@dataclass(frozen=True, slots=True)
class StatsReport:
    """Figures per provider over ``start`` .. ``end`` (UTC days, both included), per day and in
    total. Providers are in name order; days without any attempt are left out of ``days``."""

    start: date
    end: date
    usd_per_credit: float
    providers: tuple[ProviderStats, ...]
    days: tuple[DayStats, ...]
    totals: ProviderStats
    models: tuple[ModelStats, ...] = ()

    def provider(self, name: str) -> ProviderStats | None:
        return next((p for p in self.providers if p.provider == name), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "usd_per_credit": self.usd_per_credit,
            "latency_histogram": {
                "floor_ms": LATENCY_FLOOR_MS,
                "ceiling_ms": LATENCY_CEILING_MS,
                "buckets": REMOVAL_LATENCY_BUCKETS,
                "ratio": round(LATENCY_RATIO, 4),
            },
            "providers": [p.as_dict() for p in self.providers],
            "days": [d.as_dict() for d in self.days],
            "totals": self.totals.as_dict(),
            "models": [m.as_dict() for m in self.models],
        }
