"""Price lines of where the data lives: Supabase, Cloudflare R2 (storage, operations, egress after
the free tier) and Upstash Redis."""

from __future__ import annotations

from decimal import Decimal

from stolentee.costs.charges import (
    LineContext,
    billable_quantity,
    make_charge,
)
from stolentee.costs.fmt import quantity, usd_exact
from stolentee.costs.items import (
    ZERO,
    Adjustment,
    Charge,
)
from stolentee.costs.pricebook import Plan


def supabase_lines(ctx: LineContext) -> None:
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


def r2_lines(ctx: LineContext) -> None:
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


def upstash_lines(ctx: LineContext) -> None:
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
