"""The removals a period of statistics measured, as the cost model counts them: paid and self-
hosted images, credits charged and avoided."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from stolentee.costs.profile import (
    ZERO,
)
from stolentee.removal.providers.chain import PAID_PROVIDERS
from stolentee.removal.stats.report import TOTAL, StatsReport


def period_days_of(stats: StatsReport) -> int:
    """Days in the statistics' period, both ends included."""
    return (stats.end - stats.start).days + 1


def _decimal(value: float) -> Decimal:
    """A measured float as a decimal (its shortest repr: 0.25 stays 0.25)."""
    return Decimal(repr(float(value)))


@dataclass(frozen=True, slots=True)
class MeasuredRemoval:
    """Successful removals of a period split into paid (Remove.bg) and self-hosted."""

    by_provider: Mapping[str, int]
    paid_images: int
    self_hosted_images: int
    credits_charged: Decimal
    credits_avoided: Decimal

    @property
    def counterfactual_credits(self) -> Decimal:
        """Credits Remove.bg would have charged had it done every removal."""
        return self.credits_charged + self.credits_avoided

    @property
    def self_hosted_share(self) -> Decimal | None:
        total = self.paid_images + self.self_hosted_images
        return Decimal(self.self_hosted_images) / total if total else None


def measured_removal(stats: StatsReport) -> MeasuredRemoval:
    by_provider = {p.provider: p.successes for p in stats.providers if p.provider != TOTAL}
    paid = [p for p in stats.providers if p.provider in PAID_PROVIDERS]
    own = [p for p in stats.providers if p.provider not in PAID_PROVIDERS and p.provider != TOTAL]
    return MeasuredRemoval(
        by_provider=by_provider,
        paid_images=sum(p.successes for p in paid),
        self_hosted_images=sum(p.successes for p in own),
        credits_charged=sum((_decimal(p.credits_charged) for p in stats.providers), ZERO),
        credits_avoided=sum((_decimal(p.credits_avoided) for p in stats.providers), ZERO),
    )
