"""Pricing each service of a usage profile: one :class:`~stolentee.costs.items.LineItem` per
service, made of charges (quantity x unit price) with the formula written out.

:func:`price_lines` is the entry point; :mod:`stolentee.costs.model` adds the totals, the seed's
presentation, savings and differences.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from stolentee.costs.charges import (
    HUNDRED,
    LineContext,
    billable_quantity,
    credit_charges,
    credits_for,
    effective_plan,
    make_charge,
)
from stolentee.costs.fmt import quantity, usd, usd_exact
from stolentee.costs.items import (
    MINUTES_PER_MONTH,
    PAYMENT,
    TIMES,
    ZERO,
    Adjustment,
    Charge,
    LineItem,
    Policy,
)
from stolentee.costs.pricebook import Plan, Pricebook
from stolentee.costs.profile import Profile


def price_lines(book: Pricebook, profile: Profile, policy: Policy) -> tuple[LineItem, ...]:
    """Every service ``profile`` uses, priced with ``book`` under ``policy`` (in the seed's
    order: compute, frontend, storage, Redis, AI, removal, payments, CDN, domain)."""
    ctx = LineContext(book=book, profile=profile, policy=policy)
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


# --- providers ---------------------------------------------------------------------------------


def _railway(ctx: LineContext) -> None:
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
                make_charge(
                    "RAM",
                    service.ram_gb_minutes,
                    "GB-minutes",
                    ram,
                    per=MINUTES_PER_MONTH,
                    per_label=f"{quantity(MINUTES_PER_MONTH)} GB-minutes",
                ),
                make_charge(
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
                make_charge(
                    "RAM",
                    n * service.ram_gb,
                    "GB-months",
                    ram,
                    per_label="GB-month",
                    how=f"{quantity(n)} {TIMES} {quantity(service.ram_gb)} GB",
                ),
                make_charge(
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
            make_charge(
                "volume",
                volume_gb,
                "GB-months",
                provider.figure("volume_usd_per_gb_month"),
                per_label="GB-month",
            )
        )
    if compute_ is not None and compute_.egress_gb:
        extra.append(
            make_charge(
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
                make_charge(
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


def _vercel(ctx: LineContext) -> None:
    frontend = ctx.profile.frontend
    if frontend is None:
        return
    provider, plan, adjustments = effective_plan(ctx, "vercel")
    fee = plan.figure("fee_usd_per_member_month")
    members = Decimal(frontend.members)
    ctx.add(
        key="vercel",
        name="Vercel (Frontend)",
        provider="vercel",
        charges=[
            make_charge(f"{plan.name} plan", members, "members", fee, per_label="member-month")
        ],
        notes=[*plan.notes, *provider.notes],
        adjustments=adjustments,
    )


def _supabase(ctx: LineContext) -> None:
    storage = ctx.profile.storage
    database = ctx.profile.database
    on_storage = storage is not None and storage.provider == "supabase"
    on_database = database is not None and database.provider == "supabase"
    if not (on_storage or on_database):
        return
    provider, plan = ctx.plan("supabase")
    charges = [
        make_charge(f"{plan.name} plan", Decimal(1), "month", plan.figure("fee_usd_per_month")),
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
            make_charge(
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


def _r2(ctx: LineContext) -> None:
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
        billable, freed, rounded = billable_quantity(ctx, used, free, unit)
        how = f"{quantity(used)} {unit_name}"
        if ctx.policy.free_tiers:
            how = f"max(0, {quantity(used)} - {quantity(free.value)} free) {unit_name}"
            if rounded:
                how += f" rounded up to {quantity(billable)}"
        charges.append(
            make_charge(
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
    charges.append(make_charge("egress", storage.egress_gb, "GB", egress, per_label="GB"))
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


def _upstash(ctx: LineContext) -> None:
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
    charges = [make_charge(f"{plan.name} plan", Decimal(1), "month", fee)] if fee.value else []
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
            make_charge(
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
            make_charge(
                "data",
                max(ZERO, data_gb - free_gb),
                "GB",
                storage_price,
                per_label="GB",
                how=f"max(0, {quantity(data_gb)} - {quantity(free_gb)}) GB",
            )
        )
    return charges, notes


def _gemini(ctx: LineContext) -> None:
    ai = ctx.profile.ai
    if ai is None:
        return
    provider, plan = ctx.plan("gemini")
    ctx.add(
        key="gemini",
        name="Gemini API",
        provider="gemini",
        charges=[make_charge(plan.name, ai.requests, "requests", plan.figure("usd_per_request"))],
        notes=[*plan.notes, *provider.notes],
    )


def _removebg(ctx: LineContext) -> None:
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
        charges=credit_charges(provider, images, plan.figure("usd_per_credit")),
        notes=[*plan.notes, *provider.notes],
    )


def _self_hosted(ctx: LineContext) -> None:
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
        charges=[make_charge("images", images.count, "images", ZERO, per_label="image")],
        notes=notes,
    )


def _stripe(ctx: LineContext) -> None:
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
    charge = make_charge(
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


def _cdn(ctx: LineContext) -> None:
    if ctx.profile.cdn is None:
        return
    provider = ctx.book.provider("cloudflare-cdn")
    served = ctx.profile.storage.egress_gb if ctx.profile.storage is not None else ZERO
    ctx.add(
        key="cloudflare-cdn",
        name="Cloudflare CDN",
        provider="cloudflare-cdn",
        charges=[
            make_charge("served", served, "GB", provider.figure("usd_per_gb"), per_label="GB")
        ],
        notes=provider.notes,
    )


def _domain(ctx: LineContext) -> None:
    if not ctx.profile.domains:
        return
    provider = ctx.book.provider("domain")
    ctx.add(
        key="domain",
        name="Domain",
        provider="domain",
        charges=[
            make_charge(
                "domains",
                Decimal(ctx.profile.domains),
                "domains",
                provider.figure("usd_per_month"),
                per_label="month",
            )
        ],
    )
