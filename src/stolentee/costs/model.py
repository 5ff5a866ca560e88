"""The cost model: pure functions from (price book, usage profile, policy) to priced line items.

:func:`compute` prices one profile: one :class:`LineItem` per service (Railway per compute
service, Vercel, Supabase, Cloudflare R2, Upstash, Gemini, Remove.bg, the self-hosted removal,
Stripe, Cloudflare's CDN, the domain), each made of :class:`Charge` (quantity x unit price)
with the formula written out, and the totals: all costs, payment fees, infrastructure without
payment fees, revenue and what is left of it once every cost is counted once.
:func:`savings` compares two priced scenarios (monthly, yearly, over 3 years, percent of the
baseline with and without payment fees). :func:`build_report` does both for a list of profiles.

Two policies:

``as-reported``
    The seed report's method: no free tiers, usage prorated (no billing units), plans taken at
    face value, amounts held in binary floating point and rounded as JavaScript's
    ``toFixed(2)`` does; the profile's ``[seed]`` section applies (lines the seed left out,
    amounts it stated). Payment fees count as infrastructure, and "net revenue" subtracts them
    a second time. On the shipped scenarios it gives the seed's figures exactly.
``corrected``
    The price book applied faithfully: free tiers, billing units, plan terms (a shop cannot use
    a plan for non-commercial use), decimal arithmetic rounded half-up to the cent, every line
    the scenario uses; infrastructure shown without payment fees; net = revenue - total.

:func:`differences` lists every point where the two policies differ, with its reason; on the
shipped scenarios it finds each of the nine known discrepancies between the seed's figures
and the public prices (:data:`SEED_DISCREPANCIES` maps their numbers to the ids used here).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from stolentee.costs.charges import credits_for
from stolentee.costs.errors import ProfileError
from stolentee.costs.fmt import cents, percent, usd
from stolentee.costs.items import (
    AS_REPORTED,
    CORRECTED,
    INFRASTRUCTURE,
    MINUTES_PER_MONTH,
    PAYMENT,
    POLICIES,
    TIMES,
    ZERO,
    Adjustment,
    Charge,
    LineItem,
    Policy,
    get_policy,
)
from stolentee.costs.lines import price_lines
from stolentee.costs.pricebook import Pricebook
from stolentee.costs.profile import Profile

__all__ = [
    "AS_REPORTED",
    "CORRECTED",
    "INFRASTRUCTURE",
    "MINUTES_PER_MONTH",
    "PAYMENT",
    "POLICIES",
    "SEED_DISCREPANCIES",
    "TIMES",
    "Adjustment",
    "Charge",
    "CostReport",
    "Difference",
    "LineItem",
    "Policy",
    "Savings",
    "ScenarioCosts",
    "build_report",
    "compute",
    "credits_for",
    "differences",
    "get_policy",
    "savings",
]

HUNDRED = Decimal(100)
MONTHS_PER_YEAR = 12
MONTHS_IN_THREE_YEARS = 36

# The nine known discrepancies between the seed's figures and the public prices, by number, and
# the id under which the difference report lists each.
SEED_DISCREPANCIES: dict[int, str] = {
    1: "cloudflare-r2-parts-sum",
    2: "cloudflare-r2-free-tier",
    3: "cloudflare-r2-egress-claim",
    4: "domain-omitted",
    5: "removebg-stated-amount",
    6: "vercel-hobby-commercial-use",
    7: "infrastructure-includes-payment-fees",
    8: "net-revenue-double-counts-payment-fees",
    9: "savings-percent-base",
}
_SEED_ITEM = {value: key for key, value in SEED_DISCREPANCIES.items()}


@dataclass(frozen=True, slots=True)
class ScenarioCosts:
    """A profile priced under a policy. Money is monthly USD; shares are percent."""

    profile: Profile
    policy: Policy
    lines: tuple[LineItem, ...]
    omitted: tuple[LineItem, ...]  # lines the seed left out (as-reported only)
    total: Decimal
    payment_fees: Decimal
    infrastructure: Decimal  # total without payment fees
    revenue: Decimal | None
    infrastructure_share: Decimal | None  # percent of revenue, as the policy counts it
    net_revenue: Decimal | None  # as the policy counts it
    net_share: Decimal | None
    notes: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def label(self) -> str:
        return self.profile.label

    @property
    def infrastructure_with_payment_fees(self) -> Decimal:
        return self.total

    def line(self, key: str) -> LineItem | None:
        return next((line for line in self.lines if line.key == key), None)

    def omitted_line(self, key: str) -> LineItem | None:
        return next((line for line in self.omitted if line.key == key), None)


@dataclass(frozen=True, slots=True)
class Savings:
    """What ``candidate`` saves against ``baseline`` (negative: it costs more)."""

    baseline: str
    candidate: str
    baseline_policy: str
    candidate_policy: str
    baseline_total: Decimal
    candidate_total: Decimal
    monthly: Decimal
    yearly: Decimal
    three_years: Decimal
    percent: Decimal | None  # of the baseline's total (payment fees included)
    baseline_without_payment_fees: Decimal
    percent_without_payment_fees: Decimal | None  # of the baseline's other costs

    @property
    def label(self) -> str:
        if self.baseline_policy == self.candidate_policy:
            return f"{self.candidate} vs {self.baseline}"
        return (
            f"{self.candidate} ({self.candidate_policy}) vs {self.baseline} "
            f"({self.baseline_policy})"
        )


@dataclass(frozen=True, slots=True)
class Difference:
    """One point where the seed's method (``as-reported``) and the price book (``corrected``)
    disagree. ``seed_item``: its number among those nine, when it is one of them."""

    id: str
    scenario: str
    subject: str
    as_reported: str
    corrected: str
    delta_usd: Decimal | None  # corrected - as reported, monthly, where the subject is money
    reason: str

    @property
    def seed_item(self) -> int | None:
        return _SEED_ITEM.get(self.id)


@dataclass(frozen=True, slots=True)
class CostReport:
    """Profiles priced side by side under one policy, with savings and the differences."""

    policy: Policy
    pricebook: Pricebook
    scenarios: tuple[ScenarioCosts, ...]
    savings: tuple[Savings, ...]  # each later scenario vs the first, same policy
    # Under ``corrected``: each later scenario vs the first as the seed reported it, when the
    # first profile has a [seed] section (the seed's "corrected B vs A" comparison).
    reference_savings: tuple[Savings, ...]
    differences: tuple[Difference, ...]


def compute(book: Pricebook, profile: Profile, policy: Policy) -> ScenarioCosts:
    """Price ``profile`` with ``book`` under ``policy`` (a pure function)."""
    lines, omitted = _presentation(profile, policy, price_lines(book, profile, policy))
    total = sum((line.amount for line in lines), ZERO)
    fees = sum((line.amount for line in lines if line.category == PAYMENT), ZERO)
    infrastructure = total - fees
    revenue = profile.sales.revenue_usd if profile.sales is not None else None
    share = net = net_share = None
    if revenue:
        counted = total if policy.payment_fees_in_infrastructure else infrastructure
        share = counted / revenue * HUNDRED
        net = revenue - total - (fees if policy.net_subtracts_payment_fees_again else ZERO)
        net_share = net / revenue * HUNDRED
    notes = []
    if revenue is not None:
        notes.append(
            "Net revenue is revenue minus these costs only: blanks, printing, shipping and "
            "other costs of goods are not in this model, so it is not a margin."
        )
    return ScenarioCosts(
        profile=profile,
        policy=policy,
        lines=lines,
        omitted=omitted,
        total=total,
        payment_fees=fees,
        infrastructure=infrastructure,
        revenue=revenue,
        infrastructure_share=share,
        net_revenue=net,
        net_share=net_share,
        notes=tuple(notes),
    )


def _profile_error(profile: Profile, key: str, problem: str) -> ProfileError:
    return ProfileError(f"{profile.file or profile.name}: {key}: {problem}")


def _presentation(
    profile: Profile, policy: Policy, priced: Sequence[LineItem]
) -> tuple[tuple[LineItem, ...], tuple[LineItem, ...]]:
    """The profile's [seed] section: check its line keys; under as-reported, drop the lines the
    seed left out and use the amounts it stated."""
    seed = profile.seed
    lines = list(priced)
    if seed is None:
        return tuple(lines), ()
    keys = [line.key for line in lines]
    known = ", ".join(keys)
    for key in seed.omitted_lines:
        if key not in keys:
            raise _profile_error(profile, "seed.omitted_lines", f"no line {key!r} here ({known})")
    for key in seed.stated_usd:
        if key not in keys:
            raise _profile_error(
                profile, f"seed.stated_usd.{key}", f"no line {key!r} here ({known})"
            )
    if not policy.seed_presentation:
        return tuple(lines), ()
    omitted = tuple(line for line in lines if line.key in seed.omitted_lines)
    kept: list[LineItem] = []
    for line in lines:
        if line.key in seed.omitted_lines:
            continue
        stated = seed.stated_usd.get(line.key)
        if stated is not None and stated != line.amount:
            reason = (
                f"The seed states {line.name} {usd(stated)}; its own inputs give {line.formula}."
            )
            line = LineItem(
                key=line.key,
                name=line.name,
                provider=line.provider,
                category=line.category,
                quantity=line.quantity,
                unit=line.unit,
                unit_price=line.unit_price,
                amount=cents(stated),
                exact_amount=line.exact_amount,
                formula=f"{usd(stated)} as stated by the seed ({line.formula})",
                notes=(*line.notes, f"computed: {usd(line.amount)}"),
                charges=line.charges,
                adjustments=(*line.adjustments, Adjustment(f"{line.key}-stated-amount", reason)),
                verified=False,
            )
        kept.append(line)
    return tuple(kept), omitted


# --- comparing ---------------------------------------------------------------------------------


def savings(baseline: ScenarioCosts, candidate: ScenarioCosts) -> Savings:
    """What ``candidate`` saves a month against ``baseline``, a year (x12), over 3 years (x36),
    as a percentage of the baseline's total and of its costs other than payment fees."""
    monthly = baseline.total - candidate.total
    other = baseline.infrastructure
    return Savings(
        baseline=baseline.label,
        candidate=candidate.label,
        baseline_policy=baseline.policy.name,
        candidate_policy=candidate.policy.name,
        baseline_total=baseline.total,
        candidate_total=candidate.total,
        monthly=monthly,
        yearly=monthly * MONTHS_PER_YEAR,
        three_years=monthly * MONTHS_IN_THREE_YEARS,
        percent=monthly / baseline.total * HUNDRED if baseline.total else None,
        baseline_without_payment_fees=other,
        percent_without_payment_fees=(
            (monthly - (baseline.payment_fees - candidate.payment_fees)) / other * HUNDRED
            if other
            else None
        ),
    )


def differences(book: Pricebook, profiles: Sequence[Profile]) -> tuple[Difference, ...]:
    """Every point where ``as-reported`` and ``corrected`` differ on ``profiles`` (the first is
    the baseline of the savings), with its reason."""
    reported = [compute(book, profile, AS_REPORTED) for profile in profiles]
    corrected = [compute(book, profile, CORRECTED) for profile in profiles]
    found: list[Difference] = []
    for old, new in zip(reported, corrected, strict=True):
        found.extend(_line_differences(old, new))
        found.extend(_summary_differences(old, new))
    if len(profiles) > 1:
        for index in range(1, len(profiles)):
            found.extend(
                _savings_differences(
                    savings(reported[0], reported[index]),
                    savings(corrected[0], corrected[index]),
                    scenario=corrected[index].label,
                )
            )
    return tuple(found)


def _line_differences(old: ScenarioCosts, new: ScenarioCosts) -> Iterable[Difference]:
    keys: list[str] = []
    for line in (*new.lines, *old.lines, *old.omitted):
        if line.key not in keys:
            keys.append(line.key)
    for key in keys:
        before = old.line(key)
        after = new.line(key)
        left_out = old.omitted_line(key)
        name = (after or before or left_out or _missing()).name
        shown_before = usd(before.amount) if before is not None else "not listed"
        shown_after = usd(after.amount) if after is not None else "not listed"
        delta = (after.amount if after else ZERO) - (before.amount if before else ZERO)
        adjustments = [
            *(before.adjustments if before else ()),
            *(after.adjustments if after else ()),
        ]
        if before is None and left_out is not None:
            if left_out.amount:
                why = f"it still costs {usd(left_out.amount)} a month."
            else:
                why = "it costs nothing" + (
                    f", but: {left_out.notes[0]}" if left_out.notes else "."
                )
            adjustments.insert(
                0,
                Adjustment(
                    f"{key}-omitted",
                    f"The seed's {old.label} leaves out {name} ({left_out.formula}); {why}",
                ),
            )
        for adjustment in adjustments:
            yield Difference(
                id=adjustment.id,
                scenario=old.label,
                subject=name,
                as_reported=shown_before,
                corrected=shown_after,
                delta_usd=delta,
                reason=adjustment.reason,
            )
        if not adjustments and delta:
            yield Difference(
                id=f"{key}-amount",
                scenario=old.label,
                subject=name,
                as_reported=shown_before,
                corrected=shown_after,
                delta_usd=delta,
                reason=f"as reported: {before.formula if before else '-'}; corrected: "
                f"{after.formula if after else '-'}",
            )


def _missing() -> LineItem:
    raise AssertionError("unreachable: every key comes from a line")


def _summary_differences(old: ScenarioCosts, new: ScenarioCosts) -> Iterable[Difference]:
    revenue = new.revenue
    if not revenue or not new.payment_fees:
        return
    assert old.infrastructure_share is not None and new.infrastructure_share is not None
    assert old.net_revenue is not None and new.net_revenue is not None
    assert old.net_share is not None and new.net_share is not None
    seed_infra_share = old.infrastructure / revenue * HUNDRED
    yield Difference(
        id="infrastructure-includes-payment-fees",
        scenario=old.label,
        subject="infrastructure cost",
        as_reported=(
            f"{usd(old.total)} = {percent(old.infrastructure_share)} of revenue, payment fees "
            f"({usd(old.payment_fees)}) included"
        ),
        corrected=(
            f"{usd(new.infrastructure)} = {percent(new.infrastructure_share)} of revenue without "
            f"payment fees (on the seed's own figures: {usd(old.infrastructure)} = "
            f"{percent(seed_infra_share)})"
        ),
        delta_usd=None,
        reason=(
            "Payment fees are not infrastructure: they scale with revenue and are the same in "
            "every scenario. Counting them as infrastructure hides what the infrastructure costs."
        ),
    )
    seed_net = revenue - old.total
    yield Difference(
        id="net-revenue-double-counts-payment-fees",
        scenario=old.label,
        subject="net revenue",
        as_reported=(
            f"{usd(old.net_revenue)} ({percent(old.net_share)} 'margin') = revenue "
            f"{usd(revenue)} - total {usd(old.total)} - payment fees {usd(old.payment_fees)} again"
        ),
        corrected=(
            f"{usd(new.net_revenue)} ({percent(new.net_share)}) = revenue - total (on the seed's "
            f"own total: {usd(seed_net)}, {percent(seed_net / revenue * HUNDRED)})"
        ),
        delta_usd=new.net_revenue - old.net_revenue,
        reason=(
            "The total already includes the payment fees; subtracting them again counts them "
            "twice. And revenue minus these costs is not a margin: blanks, printing and "
            "shipping are not in the model."
        ),
    )


def _savings_differences(old: Savings, new: Savings, *, scenario: str) -> Iterable[Difference]:
    if old.percent is None or old.percent_without_payment_fees is None:
        return
    if old.baseline_total == old.baseline_without_payment_fees:
        return  # no payment fees: the two bases are the same
    assert new.percent_without_payment_fees is not None
    yield Difference(
        id="savings-percent-base",
        scenario=scenario,
        subject=f"savings percentage ({new.label})",
        as_reported=(
            f"{percent(old.percent)} = {usd(old.monthly)} / {usd(old.baseline_total)}, a total "
            "that includes payment fees"
        ),
        corrected=(
            f"{percent(new.percent_without_payment_fees)} of the costs other than payment fees "
            f"({usd(new.monthly)} / {usd(new.baseline_without_payment_fees)}); on the seed's "
            f"figures {percent(old.percent_without_payment_fees)} ({usd(old.monthly)} / "
            f"{usd(old.baseline_without_payment_fees)})"
        ),
        delta_usd=None,
        reason=(
            "The payment fees are equal in both scenarios, so they save nothing; putting them "
            "in the base of the percentage dilutes the saving."
        ),
    )


def build_report(book: Pricebook, profiles: Sequence[Profile], *, policy: Policy) -> CostReport:
    """Price ``profiles`` (the first is the baseline) under ``policy``, with the savings of each
    later one and the differences between the two policies."""
    if not profiles:
        raise ValueError("a cost report needs at least one profile")
    scenarios = tuple(compute(book, profile, policy) for profile in profiles)
    compared = tuple(savings(scenarios[0], scenario) for scenario in scenarios[1:])
    reference: tuple[Savings, ...] = ()
    if policy is not AS_REPORTED and profiles[0].seed is not None:
        seed_baseline = compute(book, profiles[0], AS_REPORTED)
        reference = tuple(savings(seed_baseline, scenario) for scenario in scenarios[1:])
    return CostReport(
        policy=policy,
        pricebook=book,
        scenarios=scenarios,
        savings=compared,
        reference_savings=reference,
        differences=differences(book, profiles),
    )
