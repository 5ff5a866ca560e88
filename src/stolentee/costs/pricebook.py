"""The price book: every figure the cost model prices with, with its source and date.

The book ships as ``costs/data/pricebook.toml`` (read with the standard library's ``tomllib``,
decimals parsed exactly as :class:`~decimal.Decimal`). :func:`load_pricebook` reads it and,
given a user file, lays that file's entries over it: a figure, flag, plan, source or provider
note in the user file replaces the shipped one, everything else is kept. Every figure carries
its ``source`` (an id of ``[sources]``), the date it was read (``as_of``) and whether it was
checked against the provider's own documentation (``verified``); reports mark amounts that rest
on an unverified figure.

A malformed file raises :class:`PricebookError` naming the file and the key, e.g.
``my-prices.toml: providers.cloudflare-r2.figures.storage_usd_per_gb_month.value: must be a
number >= 0; got 'cheap'``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from stolentee.costs.errors import PricebookError

# What the model needs from each provider: figures of the provider itself, figures every plan
# must have, and figures a plan may have (an absent optional figure means "not offered").
REQUIRED_FIGURES: dict[str, tuple[str, ...]] = {
    "cloudflare-r2": (
        "storage_usd_per_gb_month",
        "class_a_usd_per_million",
        "class_b_usd_per_million",
        "egress_usd_per_gb",
        "free_storage_gb_month",
        "free_class_a_operations",
        "free_class_b_operations",
        "storage_billing_unit_gb_month",
        "operations_billing_unit",
    ),
    "cloudflare-cdn": ("usd_per_gb",),
    "supabase": (),
    "removebg": ("credits_per_full_image", "credits_per_preview_image"),
    "stripe": (
        "percent_per_charge",
        "fixed_usd_per_charge",
        "international_extra_percent",
        "currency_conversion_extra_percent",
    ),
    "railway": (
        "ram_usd_per_gb_month",
        "vcpu_usd_per_month",
        "egress_usd_per_gb",
        "volume_usd_per_gb_month",
    ),
    "vercel": (),
    "upstash": (),
    "gemini": (),
    "domain": ("usd_per_month",),
}
REQUIRED_PLAN_FIGURES: dict[str, tuple[str, ...]] = {
    "supabase": (
        "fee_usd_per_month",
        "included_storage_gb",
        "included_egress_gb",
        "included_database_gb",
    ),
    "removebg": ("usd_per_credit",),
    "railway": ("fee_usd_per_month", "included_usage_usd"),
    "vercel": ("fee_usd_per_member_month",),
    "upstash": ("fee_usd_per_month", "included_commands"),
    "gemini": ("usd_per_request",),
}
OPTIONAL_PLAN_FIGURES: dict[str, tuple[str, ...]] = {
    "supabase": (
        "storage_overage_usd_per_gb",
        "egress_overage_usd_per_gb",
        "database_overage_usd_per_gb",
    ),
    "upstash": ("usd_per_100k_commands", "included_storage_gb", "storage_usd_per_gb"),
}
PLAN_FLAGS: dict[str, tuple[str, ...]] = {
    "supabase": ("pauses_when_inactive", "daily_backups"),
    "vercel": ("commercial_use",),
    "gemini": ("content_used_for_training",),
}
PROVIDERS: tuple[str, ...] = tuple(REQUIRED_FIGURES)
PLAN_PROVIDERS: tuple[str, ...] = tuple(REQUIRED_PLAN_FIGURES)


@dataclass(frozen=True, slots=True)
class Source:
    id: str
    title: str
    url: str = ""
    reference: str = ""
    file: str = ""  # the price-book file that defined it

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "title": self.title, "url": self.url, "reference": self.reference}


@dataclass(frozen=True, slots=True)
class Figure:
    """One number of the price book. ``key`` is its dotted path, e.g. ``railway.plans.pro.
    figures.fee_usd_per_month``; ``file`` the price-book file it came from."""

    key: str
    value: Decimal
    unit: str
    source: str
    as_of: date
    verified: bool
    note: str = ""
    file: str = ""

    @property
    def ref(self) -> str:
        """A short reference for reports: ``railway.pro.fee_usd_per_month``."""
        return self.key.replace(".plans.", ".").replace(".figures.", ".")

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "value": str(self.value),
            "unit": self.unit,
            "source": self.source,
            "as_of": self.as_of.isoformat(),
            "verified": self.verified,
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class Flag:
    """A yes/no term of a plan (``commercial_use``...), sourced like a figure."""

    key: str
    value: bool
    source: str
    as_of: date
    verified: bool
    note: str = ""
    file: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "value": self.value,
            "source": self.source,
            "as_of": self.as_of.isoformat(),
            "verified": self.verified,
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class Plan:
    id: str
    name: str
    figures: Mapping[str, Figure]
    flags: Mapping[str, Flag]
    notes: tuple[str, ...] = ()
    file: str = ""

    def figure(self, name: str) -> Figure:
        try:
            return self.figures[name]
        except KeyError:
            raise PricebookError(f"price book: plan {self.id!r} has no figure {name!r}") from None

    def optional(self, name: str) -> Figure | None:
        return self.figures.get(name)

    def flag(self, name: str, default: bool) -> bool:
        found = self.flags.get(name)
        return default if found is None else found.value


@dataclass(frozen=True, slots=True)
class Provider:
    id: str
    name: str
    rounding: str
    notes: tuple[str, ...]
    figures: Mapping[str, Figure]
    plans: Mapping[str, Plan]

    def figure(self, name: str) -> Figure:
        try:
            return self.figures[name]
        except KeyError:
            raise PricebookError(
                f"price book: provider {self.id!r} has no figure {name!r}"
            ) from None

    def plan(self, plan_id: str) -> Plan:
        try:
            return self.plans[plan_id]
        except KeyError:
            known = ", ".join(sorted(self.plans)) or "none"
            raise PricebookError(
                f"price book: {self.name} has no plan {plan_id!r} (plans: {known})"
            ) from None


@dataclass(frozen=True, slots=True)
class Pricebook:
    """Sources and providers; ``files`` are the files it was read from, shipped one first."""

    sources: Mapping[str, Source]
    providers: Mapping[str, Provider]
    files: tuple[str, ...]
    currency: str = "USD"

    def provider(self, provider_id: str) -> Provider:
        try:
            return self.providers[provider_id]
        except KeyError:
            raise PricebookError(f"price book: no provider {provider_id!r}") from None

    def iter_figures(self) -> Iterator[Figure]:
        for provider in self.providers.values():
            yield from provider.figures.values()
            for plan in provider.plans.values():
                yield from plan.figures.values()

    def iter_flags(self) -> Iterator[Flag]:
        for provider in self.providers.values():
            for plan in provider.plans.values():
                yield from plan.flags.values()

    def unverified(self) -> tuple[Figure, ...]:
        return tuple(figure for figure in self.iter_figures() if not figure.verified)

    @property
    def as_of(self) -> tuple[date, date]:
        """The oldest and newest ``as_of`` of its figures."""
        dates = [figure.as_of for figure in self.iter_figures()]
        return min(dates), max(dates)

    def as_dict(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "files": list(self.files),
            "sources": {key: source.as_dict() for key, source in self.sources.items()},
            "providers": {
                provider.id: {
                    "name": provider.name,
                    "rounding": provider.rounding,
                    "notes": list(provider.notes),
                    "figures": {k: f.as_dict() for k, f in provider.figures.items()},
                    "plans": {
                        plan.id: {
                            "name": plan.name,
                            "notes": list(plan.notes),
                            "figures": {k: f.as_dict() for k, f in plan.figures.items()},
                            "flags": {k: f.as_dict() for k, f in plan.flags.items()},
                        }
                        for plan in provider.plans.values()
                    },
                }
                for provider in self.providers.values()
            },
        }


# --- parsing one file into a partial book ------------------------------------------------------


# --- merging and finishing ---------------------------------------------------------------------
