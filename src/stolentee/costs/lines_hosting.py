"""Price lines of where the service runs: Railway's compute (measured use or instance sizes) and
Vercel's frontend plan."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from stolentee.costs.charges import (
    LineContext,
    effective_plan,
    make_charge,
)
from stolentee.costs.fmt import quantity, usd, usd_exact
from stolentee.costs.items import (
    MINUTES_PER_MONTH,
    TIMES,
    ZERO,
    Charge,
    LineItem,
)


def railway_lines(ctx: LineContext) -> None:
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


def vercel_lines(ctx: LineContext) -> None:
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
