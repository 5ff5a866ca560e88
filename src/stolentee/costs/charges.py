"""The arithmetic every price line shares: the usage and prices in context, a charge with its
formula, billable quantities after free tiers, and a provider's effective plan."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal

from stolentee.costs.errors import ProfileError
from stolentee.costs.fmt import cents, quantity, usd, usd_exact
from stolentee.costs.items import (
    INFRASTRUCTURE,
    TIMES,
    ZERO,
    Adjustment,
    Charge,
    LineItem,
    Policy,
)
from stolentee.costs.pricebook import Figure, Plan, Pricebook, Provider
from stolentee.costs.profile import Images, Profile

HUNDRED = Decimal(100)


@dataclass
class LineContext:
    book: Pricebook
    profile: Profile
    policy: Policy
    lines: list[LineItem] = field(default_factory=list)

    def fail(self, key: str, problem: str) -> ProfileError:
        return ProfileError(f"{self.profile.file or self.profile.name}: {key}: {problem}")

    def plan(self, provider_id: str) -> tuple[Provider, Plan]:
        provider = self.book.provider(provider_id)
        chosen = self.profile.plans.get(provider_id)
        known = ", ".join(sorted(provider.plans))
        if chosen is None:
            raise self.fail(
                f"plans.{provider_id}",
                f"is missing: the profile uses {provider.name} (plans: {known})",
            )
        if chosen not in provider.plans:
            raise self.fail(
                f"plans.{provider_id}",
                f"the price book has no {provider.name} plan {chosen!r} (plans: {known})",
            )
        return provider, provider.plans[chosen]

    def add(
        self,
        *,
        key: str,
        name: str,
        provider: str,
        charges: Sequence[Charge],
        category: str = INFRASTRUCTURE,
        notes: Iterable[str] = (),
        adjustments: Iterable[Adjustment] = (),
        extra: Decimal = ZERO,
    ) -> LineItem:
        """A line from its charges, rounded as the policy does. ``extra``: an amount that is not
        a charge of its own (none so far)."""
        exact = sum((charge.amount for charge in charges), extra)
        amount = self.policy.round(exact)
        single = charges[0] if len(charges) == 1 else None
        formula = line_formula(charges, exact, amount, self.policy)
        adjusted = list(adjustments)
        if self.policy.float_rounding and len(charges) > 1:
            parts = [cents(charge.amount) for charge in charges]
            if sum(parts, ZERO) != amount:
                shown = " + ".join(usd(part) for part in parts)
                adjusted.append(
                    Adjustment(
                        f"{key}-parts-sum",
                        f"{name}'s parts, rounded to the cent ({shown}), add to "
                        f"{usd(sum(parts, ZERO))}, yet the line is {usd(amount)}: the "
                        f"unrounded sum {usd_exact(exact)} held in binary floating point is "
                        f"{Decimal(float(exact)):.17f}, which rounds to {usd(amount)} (the "
                        "seed's arithmetic). Rounded line by line, as a bill is, the figures "
                        "agree.",
                    )
                )
        line = LineItem(
            key=key,
            name=name,
            provider=provider,
            category=category,
            quantity=single.quantity if single else None,
            unit=single.unit if single else "",
            unit_price=single.unit_price / single.per if single else None,
            amount=amount,
            exact_amount=exact,
            formula=formula,
            notes=tuple(notes),
            charges=tuple(charges),
            adjustments=tuple(adjusted),
            verified=all(charge.verified for charge in charges),
        )
        self.lines.append(line)
        return line


def make_charge(
    label: str,
    quantity_: Decimal,
    unit: str,
    price: Figure | Decimal,
    *,
    per: Decimal = Decimal(1),
    per_label: str = "",
    figures: Sequence[Figure] = (),
    how: str = "",
    shown_price: str = "",
) -> Charge:
    """``quantity_`` x ``price`` / ``per``. ``how`` replaces the default "quantity unit" and
    ``shown_price`` the default "$price/per_label" in the formula."""
    value = price.value if isinstance(price, Figure) else price
    used = [*figures, *([price] if isinstance(price, Figure) else [])]
    amount = quantity_ * value / per
    price_text = shown_price or usd_exact(value) + (f"/{per_label}" if per_label else "")
    left = how or f"{quantity(quantity_)} {units_text(quantity_, unit)}".rstrip()
    formula = f"{label}: {left} {TIMES} {price_text} = {usd_exact(amount)}"
    return Charge(
        label=label,
        quantity=quantity_,
        unit=unit,
        unit_price=value,
        amount=amount,
        formula=formula,
        per=per,
        figures=tuple(figure.ref for figure in used),
        verified=all(figure.verified for figure in used),
    )


def units_text(count: Decimal, unit: str) -> str:
    """``unit`` (a plural) in the singular for one: "1 member", "2 members"."""
    return unit[:-1] if count == 1 and unit.endswith("s") else unit


def line_formula(charges: Sequence[Charge], exact: Decimal, amount: Decimal, policy: Policy) -> str:
    if not charges:
        return f"{usd(amount)}"
    text = " + ".join(charge.formula for charge in charges)
    if len(charges) > 1:
        text += f"; total {usd_exact(exact)}"
    if cents(exact) != exact or amount != exact:
        how = "binary floating point, toFixed(2)" if policy.float_rounding else "half-up"
        text += f" -> {usd(amount)} ({how})"
    return text


def billable_quantity(
    ctx: LineContext, used: Decimal, free: Figure | None, unit: Figure | None
) -> tuple[Decimal, bool, bool]:
    """Usage left to pay for: minus the free tier (when the policy gives it), rounded up to the
    billing unit (when the policy does). Returns (billable, free tier changed it, unit did)."""
    billable = used
    freed = False
    if free is not None and ctx.policy.free_tiers:
        billable = max(ZERO, used - free.value)
        freed = billable != used
    rounded = False
    if unit is not None and ctx.policy.billing_units and unit.value > 0 and billable > 0:
        steps = (billable / unit.value).to_integral_value(rounding=ROUND_CEILING)
        rounded_value = steps * unit.value
        rounded = rounded_value != billable
        billable = rounded_value
    return billable, freed, rounded


def effective_plan(ctx: LineContext, provider_id: str) -> tuple[Provider, Plan, list[Adjustment]]:
    """The profile's plan, or under plan terms the cheapest one a commercial shop may use."""
    provider, plan = ctx.plan(provider_id)
    if not (ctx.policy.plan_terms and ctx.profile.commercial):
        return provider, plan, []
    if plan.flag("commercial_use", True):
        return provider, plan, []
    allowed = [p for p in provider.plans.values() if p.flag("commercial_use", True)]
    if not allowed:
        return provider, plan, []
    cheapest = min(allowed, key=plan_fee)
    commercial = plan.flags.get("commercial_use")
    origin = ctx.book.sources.get(commercial.source) if commercial is not None else None
    source = f" ({origin.url or origin.title})" if origin is not None else ""
    reason = (
        f"{provider.name} {plan.name} is for non-commercial personal use only{source}; a shop "
        f"taking payments needs {cheapest.name} at {usd(plan_fee(cheapest))} a month."
    )
    return provider, cheapest, [Adjustment(f"{provider_id}-{plan.id}-commercial-use", reason)]


def plan_fee(plan: Plan) -> Decimal:
    for name in ("fee_usd_per_month", "fee_usd_per_member_month"):
        figure = plan.figures.get(name)
        if figure is not None:
            return figure.value
    return ZERO


def credit_charges(provider: Provider, images: Images, price: Figure) -> list[Charge]:
    """Remove.bg's charges for ``images``: measured credits, or credits per output size."""
    if images.credits is not None:
        return [
            make_charge("credits (measured)", images.credits, "credits", price, per_label="credit")
        ]
    charges: list[Charge] = []
    for label, count, per_image in (
        ("full", images.full, provider.figure("credits_per_full_image")),
        ("preview", images.preview, provider.figure("credits_per_preview_image")),
    ):
        if not count:
            continue
        credits = "credit" if per_image.value == 1 else "credits"
        charges.append(
            make_charge(
                f"{label} images",
                count,
                "images",
                per_image.value * price.value,
                figures=[per_image, price],
                how=f"{quantity(count)} {units_text(count, 'images')} {TIMES} "
                f"{quantity(per_image.value)} {credits}",
                shown_price=f"{usd_exact(price.value)}/credit",
            )
        )
    return charges


def credits_for(book: Pricebook, images: Images) -> Decimal:
    """Remove.bg credits ``images`` cost: measured credits, else by output size."""
    if images.credits is not None:
        return images.credits
    provider = book.provider("removebg")
    return (
        images.full * provider.figure("credits_per_full_image").value
        + images.preview * provider.figure("credits_per_preview_image").value
    )
