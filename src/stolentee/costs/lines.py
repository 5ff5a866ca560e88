"""Pricing each service of a usage profile: one :class:`~stolentee.costs.items.LineItem` per
service, made of charges (quantity x unit price) with the formula written out.

:func:`price_lines` is the entry point; :mod:`stolentee.costs.model` adds the totals, the seed's
presentation, savings and differences.
"""

from __future__ import annotations

from decimal import Decimal

from stolentee.costs.charges import (
    HUNDRED,
    LineContext,
    credit_charges,
    credits_for,
    make_charge,
)
from stolentee.costs.fmt import quantity, usd, usd_exact
from stolentee.costs.items import (
    PAYMENT,
    TIMES,
    ZERO,
    LineItem,
    Policy,
)
from stolentee.costs.lines_data import r2_lines, supabase_lines, upstash_lines
from stolentee.costs.lines_hosting import railway_lines, vercel_lines
from stolentee.costs.pricebook import Pricebook
from stolentee.costs.profile import Profile


def price_lines(book: Pricebook, profile: Profile, policy: Policy) -> tuple[LineItem, ...]:
    """Every service ``profile`` uses, priced with ``book`` under ``policy`` (in the seed's
    order: compute, frontend, storage, Redis, AI, removal, payments, CDN, domain)."""
    ctx = LineContext(book=book, profile=profile, policy=policy)
    railway_lines(ctx)
    vercel_lines(ctx)
    supabase_lines(ctx)
    r2_lines(ctx)
    upstash_lines(ctx)
    _gemini(ctx)
    _removebg(ctx)
    _self_hosted(ctx)
    _stripe(ctx)
    _cdn(ctx)
    _domain(ctx)
    return tuple(ctx.lines)


# --- providers ---------------------------------------------------------------------------------


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
