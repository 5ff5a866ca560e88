"""Pricing each service of a usage profile: one :class:`~stolentee.costs.items.LineItem` per
service, made of charges (quantity x unit price) with the formula written out.

:func:`price_lines` is the entry point; :mod:`stolentee.costs.model` adds the totals, the seed's
presentation, savings and differences.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, Decimal

from stolentee.costs.errors import ProfileError
from stolentee.costs.fmt import cents, quantity, usd, usd_exact
from stolentee.costs.items import (
    INFRASTRUCTURE,
    MINUTES_PER_MONTH,
    PAYMENT,
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


def price_lines(book: Pricebook, profile: Profile, policy: Policy) -> tuple[LineItem, ...]:
    """Every service ``profile`` uses, priced with ``book`` under ``policy`` (in the seed's
    order: compute, frontend, storage, Redis, AI, removal, payments, CDN, domain)."""
    ctx = _Context(book=book, profile=profile, policy=policy)
    _railway(ctx)
    _vercel(ctx)
    _supabase(ctx)
    _r2(ctx)
    _upstash(ctx)
    _gemini(ctx)
    _removebg(ctx)
    _self_hosted(ctx)
    _stripe(ctx)
    _cdn(ctx)
    _domain(ctx)
    return tuple(ctx.lines)


@dataclass
class _Context:
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
        formula = _line_formula(charges, exact, amount, self.policy)
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


def _charge(
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
    left = how or f"{quantity(quantity_)} {_units(quantity_, unit)}".rstrip()
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


def _units(count: Decimal, unit: str) -> str:
    """``unit`` (a plural) in the singular for one: "1 member", "2 members"."""
    return unit[:-1] if count == 1 and unit.endswith("s") else unit


def _line_formula(
    charges: Sequence[Charge], exact: Decimal, amount: Decimal, policy: Policy
) -> str:
    if not charges:
        return f"{usd(amount)}"
    text = " + ".join(charge.formula for charge in charges)
    if len(charges) > 1:
        text += f"; total {usd_exact(exact)}"
    if cents(exact) != exact or amount != exact:
        how = "binary floating point, toFixed(2)" if policy.float_rounding else "half-up"
        text += f" -> {usd(amount)} ({how})"
    return text


def _billable(
    ctx: _Context, used: Decimal, free: Figure | None, unit: Figure | None
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


def _effective_plan(ctx: _Context, provider_id: str) -> tuple[Provider, Plan, list[Adjustment]]:
    """The profile's plan, or under plan terms the cheapest one a commercial shop may use."""
    provider, plan = ctx.plan(provider_id)
    if not (ctx.policy.plan_terms and ctx.profile.commercial):
        return provider, plan, []
    if plan.flag("commercial_use", True):
        return provider, plan, []
    allowed = [p for p in provider.plans.values() if p.flag("commercial_use", True)]
    if not allowed:
        return provider, plan, []
    cheapest = min(allowed, key=_plan_fee)
    commercial = plan.flags.get("commercial_use")
    origin = ctx.book.sources.get(commercial.source) if commercial is not None else None
    source = f" ({origin.url or origin.title})" if origin is not None else ""
    reason = (
        f"{provider.name} {plan.name} is for non-commercial personal use only{source}; a shop "
        f"taking payments needs {cheapest.name} at {usd(_plan_fee(cheapest))} a month."
    )
    return provider, cheapest, [Adjustment(f"{provider_id}-{plan.id}-commercial-use", reason)]


def _plan_fee(plan: Plan) -> Decimal:
    for name in ("fee_usd_per_month", "fee_usd_per_member_month"):
        figure = plan.figures.get(name)
        if figure is not None:
            return figure.value
    return ZERO


# --- providers ---------------------------------------------------------------------------------


def _railway(ctx: _Context) -> None:
    compute_ = ctx.profile.compute
    volume_gb = ZERO
    storage = ctx.profile.storage
    if storage is not None and storage.provider == "railway-volume":
        volume_gb += storage.stored_gb
    if compute_ is None and not volume_gb:
        return
    provider, plan = ctx.plan("railway")
    ram = provider.figure("ram_usd_per_gb_month")
    cpu = provider.figure("vcpu_usd_per_month")
    usage_lines: list[LineItem] = []
    for service in compute_.services if compute_ is not None else ():
        if service.measured:
            assert service.ram_gb_minutes is not None and service.vcpu_minutes is not None
            charges = [
                _charge(
                    "RAM",
                    service.ram_gb_minutes,
                    "GB-minutes",
                    ram,
                    per=MINUTES_PER_MONTH,
                    per_label=f"{quantity(MINUTES_PER_MONTH)} GB-minutes",
                ),
                _charge(
                    "CPU",
                    service.vcpu_minutes,
                    "vCPU-minutes",
                    cpu,
                    per=MINUTES_PER_MONTH,
                    per_label=f"{quantity(MINUTES_PER_MONTH)} vCPU-minutes",
                ),
            ]
        else:
            n = service.instances
            charges = [
                _charge(
                    "RAM",
                    n * service.ram_gb,
                    "GB-months",
                    ram,
                    per_label="GB-month",
                    how=f"{quantity(n)} {TIMES} {quantity(service.ram_gb)} GB",
                ),
                _charge(
                    "CPU",
                    n * service.vcpu,
                    "vCPU-months",
                    cpu,
                    per_label="vCPU-month",
                    how=f"{quantity(n)} {TIMES} {quantity(service.vcpu)} vCPU",
                ),
            ]
        usage_lines.append(
            ctx.add(
                key=f"railway-{service.key}",
                name=f"Railway ({service.name})",
                provider="railway",
                charges=charges,
            )
        )
    extra: list[Charge] = []
    if compute_ is not None and compute_.volume_gb:
        volume_gb += compute_.volume_gb
    if volume_gb:
        extra.append(
            _charge(
                "volume",
                volume_gb,
                "GB-months",
                provider.figure("volume_usd_per_gb_month"),
                per_label="GB-month",
            )
        )
    if compute_ is not None and compute_.egress_gb:
        extra.append(
            _charge(
                "egress",
                compute_.egress_gb,
                "GB",
                provider.figure("egress_usd_per_gb"),
                per_label="GB",
            )
        )
    if extra:
        usage_lines.append(
            ctx.add(
                key="railway-other",
                name="Railway (volume, egress)",
                provider="railway",
                charges=extra,
            )
        )
    usage = sum((line.exact_amount for line in usage_lines), ZERO)
    fee = plan.figure("fee_usd_per_month")
    included = plan.figure("included_usage_usd")
    top_up = fee.value - min(usage, included.value)
    note = (
        f"{provider.name} {plan.name}: the {usd(fee.value)} fee includes "
        f"{usd(included.value)} of usage; usage {usd_exact(usage)}"
    )
    if top_up > 0:
        ctx.add(
            key="railway-plan",
            name=f"Railway ({plan.name} plan)",
            provider="railway",
            charges=[
                _charge(
                    "plan fee not used up",
                    Decimal(1),
                    "month",
                    top_up,
                    figures=[fee, included],
                    how=f"{usd(fee.value)} fee - {usd_exact(min(usage, included.value))} usage",
                )
            ],
            notes=[note],
        )
    elif usage_lines:
        first = usage_lines[0]
        ctx.lines[ctx.lines.index(first)] = replace(
            first, notes=(*first.notes, note + " (all services together).")
        )


def _vercel(ctx: _Context) -> None:
    frontend = ctx.profile.frontend
    if frontend is None:
        return
    provider, plan, adjustments = _effective_plan(ctx, "vercel")
    fee = plan.figure("fee_usd_per_member_month")
    members = Decimal(frontend.members)
    ctx.add(
        key="vercel",
        name="Vercel (Frontend)",
        provider="vercel",
        charges=[_charge(f"{plan.name} plan", members, "members", fee, per_label="member-month")],
        notes=[*plan.notes, *provider.notes],
        adjustments=adjustments,
    )


def _supabase(ctx: _Context) -> None:
    storage = ctx.profile.storage
    database = ctx.profile.database
    on_storage = storage is not None and storage.provider == "supabase"
    on_database = database is not None and database.provider == "supabase"
    if not (on_storage or on_database):
        return
    provider, plan = ctx.plan("supabase")
    charges = [
        _charge(f"{plan.name} plan", Decimal(1), "month", plan.figure("fee_usd_per_month")),
    ]
    notes = list(plan.notes)
    uses: list[tuple[str, Decimal, str, str]] = []
    if on_storage and storage is not None:
        uses.append(
            ("storage", storage.stored_gb, "included_storage_gb", "storage_overage_usd_per_gb")
        )
        uses.append(
            ("egress", storage.egress_gb, "included_egress_gb", "egress_overage_usd_per_gb")
        )
    if on_database and database is not None:
        uses.append(
            ("database", database.size_gb, "included_database_gb", "database_overage_usd_per_gb")
        )
    for label, used, included_name, price_name in uses:
        included = plan.figure(included_name)
        over = max(ZERO, used - included.value)
        price = plan.optional(price_name)
        if price is None:
            if over > 0:
                notes.append(
                    f"{quantity(used)} GB of {label} exceeds the {plan.name} plan's "
                    f"{quantity(included.value)} GB, which it does not allow to exceed."
                )
            else:
                notes.append(
                    f"{label}: {quantity(used)} GB within the {quantity(included.value)} GB "
                    "included."
                )
            continue
        charges.append(
            _charge(
                f"{label} above {quantity(included.value)} GB included",
                over,
                "GB",
                price,
                per_label="GB",
                figures=[included],
                how=f"max(0, {quantity(used)} - {quantity(included.value)}) GB",
            )
        )
    name = "Supabase Storage" if on_storage else "Supabase (database)"
    ctx.add(
        key="supabase",
        name=name,
        provider="supabase",
        charges=charges,
        notes=[*notes, *provider.notes],
    )


def _r2(ctx: _Context) -> None:
    storage = ctx.profile.storage
    if storage is None or storage.provider != "cloudflare-r2":
        return
    provider = ctx.book.provider("cloudflare-r2")
    fig = provider.figure
    unit_ops = fig("operations_billing_unit")
    freed_any: list[str] = []
    rounded_any: list[str] = []
    charges: list[Charge] = []
    million = Decimal(1_000_000)
    for label, used, free_name, price_name, unit, per, per_label, unit_name in (
        (
            "storage",
            storage.stored_gb,
            "free_storage_gb_month",
            "storage_usd_per_gb_month",
            fig("storage_billing_unit_gb_month"),
            Decimal(1),
            "GB-month",
            "GB-months",
        ),
        (
            "Class A",
            storage.class_a_operations,
            "free_class_a_operations",
            "class_a_usd_per_million",
            unit_ops,
            million,
            "million",
            "operations",
        ),
        (
            "Class B",
            storage.class_b_operations,
            "free_class_b_operations",
            "class_b_usd_per_million",
            unit_ops,
            million,
            "million",
            "operations",
        ),
    ):
        free = fig(free_name)
        billable, freed, rounded = _billable(ctx, used, free, unit)
        how = f"{quantity(used)} {unit_name}"
        if ctx.policy.free_tiers:
            how = f"max(0, {quantity(used)} - {quantity(free.value)} free) {unit_name}"
            if rounded:
                how += f" rounded up to {quantity(billable)}"
        charges.append(
            _charge(
                label,
                billable,
                unit_name,
                fig(price_name),
                per=per,
                per_label=per_label,
                figures=[free, unit] if ctx.policy.free_tiers else [],
                how=how,
            )
        )
        if freed:
            freed_any.append(
                f"{label} {usd_exact(used * fig(price_name).value / per)} -> "
                f"{usd_exact(billable * fig(price_name).value / per)}"
            )
        if rounded:
            rounded_any.append(label)
    egress = fig("egress_usd_per_gb")
    charges.append(_charge("egress", storage.egress_gb, "GB", egress, per_label="GB"))
    notes = list(provider.notes)
    adjustments: list[Adjustment] = []
    if freed_any:
        adjustments.append(
            Adjustment(
                "cloudflare-r2-free-tier",
                "R2's free tier (10 GB-month of storage, 1 million Class A and 10 million "
                "Class B operations a month) applies to every account and the seed ignores it: "
                + "; ".join(freed_any)
                + ".",
            )
        )
    if rounded_any:
        adjustments.append(
            Adjustment(
                "cloudflare-r2-billing-units",
                f"R2 rounds usage up to the next billing unit ({', '.join(rounded_any)}); the "
                "seed prorates.",
            )
        )
    seed = ctx.profile.seed
    claimed = seed.claims.get("r2_egress_free_up_to_gb") if seed is not None else None
    if claimed is not None and ctx.policy.seed_presentation:
        notes.append(f"the seed: '{quantity(claimed)} GB egress free'")
        if egress.value == 0:
            adjustments.append(
                Adjustment(
                    "cloudflare-r2-egress-claim",
                    f"The seed says '{quantity(claimed)} GB egress free'; R2 egress is free at "
                    f"any volume (price book: {usd_exact(egress.value)} per GB, no limit), not "
                    f"up to {quantity(claimed)} GB.",
                )
            )
    ctx.add(
        key="cloudflare-r2",
        name="Cloudflare R2",
        provider="cloudflare-r2",
        charges=charges,
        notes=notes,
        adjustments=adjustments,
    )


def _upstash(ctx: _Context) -> None:
    redis = ctx.profile.redis
    if redis is None or redis.provider != "upstash":
        return
    provider, plan = ctx.plan("upstash")
    charges, notes = _upstash_charges(plan, redis.commands, redis.data_gb)
    for other in provider.plans.values():
        if other.id == plan.id:
            continue
        other_charges, other_notes = _upstash_charges(other, redis.commands, redis.data_gb)
        cheaper = sum((c.amount for c in other_charges), ZERO) < sum(
            (c.amount for c in charges), ZERO
        )
        if cheaper and not other_notes:
            included = other.figure("included_commands").value
            notes.append(
                f"The {other.name} plan ({quantity(included)} commands a month) would cover "
                f"{quantity(redis.commands)} commands{'; ' + other.notes[0] if other.notes else ''}"
            )
    ctx.add(
        key="upstash",
        name="Upstash Redis",
        provider="upstash",
        charges=charges,
        notes=[*notes, *plan.notes, *provider.notes],
    )


def _upstash_charges(
    plan: Plan, commands: Decimal, data_gb: Decimal
) -> tuple[list[Charge], list[str]]:
    notes: list[str] = []
    fee = plan.figure("fee_usd_per_month")
    charges = [_charge(f"{plan.name} plan", Decimal(1), "month", fee)] if fee.value else []
    included = plan.figure("included_commands")
    price = plan.optional("usd_per_100k_commands")
    billable = max(ZERO, commands - included.value)
    if price is None:
        if billable > 0:
            notes.append(
                f"{quantity(commands)} commands exceed the {plan.name} plan's "
                f"{quantity(included.value)}: the rest are refused."
            )
    else:
        how = f"{quantity(commands)} commands"
        if included.value:
            how = f"max(0, {quantity(commands)} - {quantity(included.value)}) commands"
        charges.append(
            _charge(
                "commands",
                billable,
                "commands",
                price,
                per=Decimal(100_000),
                per_label="100K",
                figures=[included],
                how=how,
            )
        )
    storage_price = plan.optional("storage_usd_per_gb")
    storage_included = plan.optional("included_storage_gb")
    if storage_price is not None and data_gb:
        free_gb = storage_included.value if storage_included is not None else ZERO
        charges.append(
            _charge(
                "data",
                max(ZERO, data_gb - free_gb),
                "GB",
                storage_price,
                per_label="GB",
                how=f"max(0, {quantity(data_gb)} - {quantity(free_gb)}) GB",
            )
        )
    return charges, notes


def _gemini(ctx: _Context) -> None:
    ai = ctx.profile.ai
    if ai is None:
        return
    provider, plan = ctx.plan("gemini")
    ctx.add(
        key="gemini",
        name="Gemini API",
        provider="gemini",
        charges=[_charge(plan.name, ai.requests, "requests", plan.figure("usd_per_request"))],
        notes=[*plan.notes, *provider.notes],
    )


def _credit_charges(provider: Provider, images: Images, price: Figure) -> list[Charge]:
    """Remove.bg's charges for ``images``: measured credits, or credits per output size."""
    if images.credits is not None:
        return [_charge("credits (measured)", images.credits, "credits", price, per_label="credit")]
    charges: list[Charge] = []
    for label, count, per_image in (
        ("full", images.full, provider.figure("credits_per_full_image")),
        ("preview", images.preview, provider.figure("credits_per_preview_image")),
    ):
        if not count:
            continue
        credits = "credit" if per_image.value == 1 else "credits"
        charges.append(
            _charge(
                f"{label} images",
                count,
                "images",
                per_image.value * price.value,
                figures=[per_image, price],
                how=f"{quantity(count)} {_units(count, 'images')} {TIMES} "
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


def _removebg(ctx: _Context) -> None:
    removal = ctx.profile.removal
    if removal is None:
        return
    images = removal.removebg
    if not images.count and not images.credits:
        return
    provider, plan = ctx.plan("removebg")
    ctx.add(
        key="removebg",
        name="Remove.bg API",
        provider="removebg",
        charges=_credit_charges(provider, images, plan.figure("usd_per_credit")),
        notes=[*plan.notes, *provider.notes],
    )


def _self_hosted(ctx: _Context) -> None:
    removal = ctx.profile.removal
    if removal is None or not removal.self_hosted.count:
        return
    images = removal.self_hosted
    notes = ["Runs on our own compute: its cost is in the compute lines (e.g. the worker)."]
    plan_id = ctx.profile.plans.get("removebg")
    provider = ctx.book.provider("removebg")
    if plan_id is not None and plan_id in provider.plans:
        price = provider.plans[plan_id].figure("usd_per_credit")
        avoided = credits_for(ctx.book, images)
        notes.append(
            f"Remove.bg would have charged {quantity(avoided)} credits {TIMES} "
            f"{usd_exact(price.value)} = {usd(avoided * price.value)}."
        )
    ctx.add(
        key="self-hosted-removal",
        name="Self-hosted rembg",
        provider="self-hosted",
        charges=[_charge("images", images.count, "images", ZERO, per_label="image")],
        notes=notes,
    )


def _stripe(ctx: _Context) -> None:
    sales = ctx.profile.sales
    if sales is None or not sales.orders_per_month:
        return
    provider = ctx.book.provider("stripe")
    base = provider.figure("percent_per_charge")
    fixed = provider.figure("fixed_usd_per_charge")
    intl = provider.figure("international_extra_percent")
    conv = provider.figure("currency_conversion_extra_percent")
    mix = sales.card_mix
    rate = (
        base.value
        + intl.value * mix.international_share
        + conv.value * mix.currency_conversion_share
    )
    per_order = sales.average_order_value_usd * rate / HUNDRED + fixed.value
    rate_text = f"{quantity(base.value)}%"
    if mix.international_share:
        rate_text += f" + {quantity(intl.value)}% {TIMES} {quantity(mix.international_share)} intl"
    if mix.currency_conversion_share:
        share = quantity(mix.currency_conversion_share)
        rate_text += f" + {quantity(conv.value)}% {TIMES} {share} converted"
    charge = _charge(
        "card fees",
        sales.orders_per_month,
        "orders",
        per_order,
        figures=[base, fixed, intl, conv],
        shown_price=(
            f"({usd_exact(sales.average_order_value_usd)} {TIMES} {rate_text} + "
            f"{usd_exact(fixed.value)} = {usd_exact(per_order)})"
        ),
    )
    ctx.add(
        key="stripe",
        name="Stripe (payment fees)",
        provider="stripe",
        category=PAYMENT,
        charges=[charge],
        notes=[*provider.notes, "Scales with revenue; the same in every scenario of one shop."],
    )


def _cdn(ctx: _Context) -> None:
    if ctx.profile.cdn is None:
        return
    provider = ctx.book.provider("cloudflare-cdn")
    served = ctx.profile.storage.egress_gb if ctx.profile.storage is not None else ZERO
    ctx.add(
        key="cloudflare-cdn",
        name="Cloudflare CDN",
        provider="cloudflare-cdn",
        charges=[_charge("served", served, "GB", provider.figure("usd_per_gb"), per_label="GB")],
        notes=provider.notes,
    )


def _domain(ctx: _Context) -> None:
    if not ctx.profile.domains:
        return
    provider = ctx.book.provider("domain")
    ctx.add(
        key="domain",
        name="Domain",
        provider="domain",
        charges=[
            _charge(
                "domains",
                Decimal(ctx.profile.domains),
                "domains",
                provider.figure("usd_per_month"),
                per_label="month",
            )
        ],
    )
