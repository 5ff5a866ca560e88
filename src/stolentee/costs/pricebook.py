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
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from stolentee.costs._data import (
    Where,
    boolean,
    day,
    no_unknown,
    number,
    parse_toml,
    read_toml,
    required,
    shipped_text,
    shown,
    strings,
    table,
    text,
)
from stolentee.costs.errors import PricebookError

SHIPPED_PRICEBOOK = "pricebook.toml"
SCHEMA_VERSION = 1

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


@dataclass
class _RawPlan:
    name: str | None = None
    notes: tuple[str, ...] | None = None
    figures: dict[str, Figure] = field(default_factory=dict)
    flags: dict[str, Flag] = field(default_factory=dict)
    file: str = ""


@dataclass
class _RawProvider:
    name: str | None = None
    rounding: str | None = None
    notes: tuple[str, ...] | None = None
    figures: dict[str, Figure] = field(default_factory=dict)
    plans: dict[str, _RawPlan] = field(default_factory=dict)
    file: str = ""


@dataclass
class _RawBook:
    sources: dict[str, Source] = field(default_factory=dict)
    providers: dict[str, _RawProvider] = field(default_factory=dict)
    currency: str | None = None


_FIGURE_KEYS = ("value", "unit", "source", "as_of", "verified", "note")
_FLAG_KEYS = ("value", "source", "as_of", "verified", "note")


def _parse_book(data: Mapping[str, Any], *, file: str, shipped: bool) -> _RawBook:
    """One file's entries. ``shipped``: every field of every figure is required; a user file may
    leave out ``unit`` (kept from the shipped figure), ``source`` (this file) and ``verified``
    (false)."""
    root = Where(file, error=PricebookError)
    no_unknown(data, ("schema", "currency", "sources", "providers"), root)
    if "schema" in data and data["schema"] != SCHEMA_VERSION:
        raise (root / "schema").fail(f"must be {SCHEMA_VERSION}; got {shown(data['schema'])}")
    book = _RawBook()
    if "currency" in data:
        currency = text(data["currency"], root / "currency")
        if currency != "USD":
            raise (root / "currency").fail(f"only USD is supported; got {currency!r}")
        book.currency = currency
    sources = table(data.get("sources", {}), root / "sources")
    for source_id, raw in sources.items():
        where = root / "sources" / source_id
        entry = table(raw, where)
        no_unknown(entry, ("title", "url", "reference"), where)
        if "title" not in entry:
            raise (where / "title").fail("is missing")
        book.sources[source_id] = Source(
            id=source_id,
            title=text(entry["title"], where / "title"),
            url=text(entry.get("url", ""), where / "url"),
            reference=text(entry.get("reference", ""), where / "reference"),
            file=file,
        )
    providers = table(data.get("providers", {}), root / "providers")
    for provider_id, raw in providers.items():
        where = root / "providers" / provider_id
        if provider_id not in PROVIDERS:
            raise where.fail(f"unknown provider (known: {', '.join(PROVIDERS)})")
        book.providers[provider_id] = _parse_provider(
            provider_id, table(raw, where), where, shipped=shipped
        )
    return book


def _parse_provider(
    provider_id: str, entry: Mapping[str, Any], where: Where, *, shipped: bool
) -> _RawProvider:
    no_unknown(entry, ("name", "rounding", "notes", "figures", "plans"), where)
    provider = _RawProvider(file=where.file)
    if "name" in entry:
        provider.name = text(entry["name"], where / "name")
    if "rounding" in entry:
        provider.rounding = text(entry["rounding"], where / "rounding")
    if "notes" in entry:
        provider.notes = strings(entry["notes"], where / "notes")
    figures = table(entry.get("figures", {}), where / "figures")
    for name, raw in figures.items():
        fig_where = where / "figures" / name
        if name not in REQUIRED_FIGURES[provider_id]:
            allowed = ", ".join(REQUIRED_FIGURES[provider_id]) or "none"
            raise fig_where.fail(f"unknown figure (known: {allowed})")
        provider.figures[name] = _parse_figure(raw, fig_where, shipped=shipped)
    plans = table(entry.get("plans", {}), where / "plans")
    if plans and provider_id not in PLAN_PROVIDERS:
        raise (where / "plans").fail(f"{provider_id} has no plans in this model")
    for plan_id, raw in plans.items():
        plan_where = where / "plans" / plan_id
        provider.plans[plan_id] = _parse_plan(
            provider_id, table(raw, plan_where), plan_where, shipped=shipped
        )
    return provider


def _parse_plan(
    provider_id: str, entry: Mapping[str, Any], where: Where, *, shipped: bool
) -> _RawPlan:
    no_unknown(entry, ("name", "notes", "figures", "flags"), where)
    plan = _RawPlan(file=where.file)
    if "name" in entry:
        plan.name = text(entry["name"], where / "name")
    if "notes" in entry:
        plan.notes = strings(entry["notes"], where / "notes")
    known = REQUIRED_PLAN_FIGURES[provider_id] + OPTIONAL_PLAN_FIGURES.get(provider_id, ())
    for name, raw in table(entry.get("figures", {}), where / "figures").items():
        fig_where = where / "figures" / name
        if name not in known:
            raise fig_where.fail(f"unknown figure (known: {', '.join(known)})")
        plan.figures[name] = _parse_figure(raw, fig_where, shipped=shipped)
    flags = PLAN_FLAGS.get(provider_id, ())
    for name, raw in table(entry.get("flags", {}), where / "flags").items():
        flag_where = where / "flags" / name
        if name not in flags:
            raise flag_where.fail(f"unknown flag (known: {', '.join(flags) or 'none'})")
        plan.flags[name] = _parse_flag(raw, flag_where, shipped=shipped)
    return plan


def _parse_figure(raw: object, where: Where, *, shipped: bool) -> Figure:
    entry = table(raw, where)
    no_unknown(entry, _FIGURE_KEYS, where)
    required(
        entry,
        ("value", "unit", "source", "as_of", "verified") if shipped else ("value", "as_of"),
        where,
    )
    return Figure(
        key=where.key.removeprefix("providers."),
        value=number(entry["value"], where / "value"),
        unit=text(entry.get("unit", ""), where / "unit"),
        source=text(entry.get("source", ""), where / "source"),
        as_of=day(entry["as_of"], where / "as_of"),
        verified=boolean(entry.get("verified", False), where / "verified"),
        note=text(entry.get("note", ""), where / "note"),
        file=where.file,
    )


def _parse_flag(raw: object, where: Where, *, shipped: bool) -> Flag:
    entry = table(raw, where)
    no_unknown(entry, _FLAG_KEYS, where)
    required(
        entry, ("value", "source", "as_of", "verified") if shipped else ("value", "as_of"), where
    )
    return Flag(
        key=where.key.removeprefix("providers."),
        value=boolean(entry["value"], where / "value"),
        source=text(entry.get("source", ""), where / "source"),
        as_of=day(entry["as_of"], where / "as_of"),
        verified=boolean(entry.get("verified", False), where / "verified"),
        note=text(entry.get("note", ""), where / "note"),
        file=where.file,
    )


# --- merging and finishing ---------------------------------------------------------------------


def _merge(base: _RawBook, over: _RawBook, *, file: str) -> _RawBook:
    """``over`` laid on ``base``: entries replace entries; a user figure without a source is
    attributed to the user file, one without a unit keeps the shipped unit."""
    sources = {**base.sources, **over.sources}
    user_source = f"file:{file}"
    providers = dict(base.providers)
    for provider_id, extra in over.providers.items():
        current = providers.get(provider_id, _RawProvider(file=file))
        merged = _RawProvider(
            name=extra.name if extra.name is not None else current.name,
            rounding=extra.rounding if extra.rounding is not None else current.rounding,
            notes=extra.notes if extra.notes is not None else current.notes,
            figures=dict(current.figures),
            plans=dict(current.plans),
            file=current.file,
        )
        for name, figure in extra.figures.items():
            merged.figures[name] = _complete(figure, current.figures.get(name), user_source)
        for plan_id, plan in extra.plans.items():
            old = current.plans.get(plan_id)
            new_plan = _RawPlan(
                name=plan.name if plan.name is not None else (old.name if old else None),
                notes=plan.notes if plan.notes is not None else (old.notes if old else None),
                figures=dict(old.figures) if old else {},
                flags=dict(old.flags) if old else {},
                file=old.file if old else file,
            )
            for name, figure in plan.figures.items():
                previous = old.figures.get(name) if old else None
                new_plan.figures[name] = _complete(figure, previous, user_source)
            for name, flag in plan.flags.items():
                new_plan.flags[name] = replace(flag, source=flag.source or user_source)
            merged.plans[plan_id] = new_plan
        providers[provider_id] = merged
    if any(source.startswith("file:") for source in _sources_used(providers)):
        sources[user_source] = Source(
            id=user_source, title=f"user price book {file}", reference=file, file=file
        )
    return _RawBook(sources=sources, providers=providers, currency=over.currency or base.currency)


def _complete(figure: Figure, previous: Figure | None, user_source: str) -> Figure:
    unit = figure.unit or (previous.unit if previous is not None else "")
    return replace(figure, unit=unit, source=figure.source or user_source)


def _sources_used(providers: Mapping[str, _RawProvider]) -> Iterator[str]:
    for provider in providers.values():
        for figure in provider.figures.values():
            yield figure.source
        for plan in provider.plans.values():
            for figure in plan.figures.values():
                yield figure.source
            for flag in plan.flags.values():
                yield flag.source


def _finish(raw: _RawBook, files: tuple[str, ...]) -> Pricebook:
    """Check completeness (every provider, its required figures and plan figures, known source
    ids) and freeze."""
    providers: dict[str, Provider] = {}
    for provider_id in PROVIDERS:
        entry = raw.providers.get(provider_id)
        if entry is None:
            raise PricebookError(f"{files[-1]}: providers.{provider_id}: is missing")
        where = Where(entry.file, f"providers.{provider_id}", error=PricebookError)
        for name in REQUIRED_FIGURES[provider_id]:
            if name not in entry.figures:
                raise (where / "figures" / name).fail("is missing")
        plans: dict[str, Plan] = {}
        for plan_id, plan in entry.plans.items():
            plan_where = Where(
                plan.file, f"providers.{provider_id}.plans.{plan_id}", error=PricebookError
            )
            for name in REQUIRED_PLAN_FIGURES.get(provider_id, ()):
                if name not in plan.figures:
                    raise (plan_where / "figures" / name).fail("is missing")
            plans[plan_id] = Plan(
                id=plan_id,
                name=plan.name or plan_id,
                figures=dict(plan.figures),
                flags=dict(plan.flags),
                notes=plan.notes or (),
                file=plan.file,
            )
        if provider_id in PLAN_PROVIDERS and not plans:
            raise (where / "plans").fail("needs at least one plan")
        providers[provider_id] = Provider(
            id=provider_id,
            name=entry.name or provider_id,
            rounding=entry.rounding or "none",
            notes=entry.notes or (),
            figures=dict(entry.figures),
            plans=plans,
        )
    book = Pricebook(
        sources=dict(raw.sources),
        providers=providers,
        files=files,
        currency=raw.currency or "USD",
    )
    items: list[Figure | Flag] = [*book.iter_figures(), *book.iter_flags()]
    for item in items:
        if item.source not in book.sources:
            where = Where(item.file, f"providers.{item.key}.source", error=PricebookError)
            known = ", ".join(sorted(book.sources))
            raise where.fail(f"unknown source {item.source!r} (sources: {known})")
    return book


def load_pricebook(path: str | Path | None = None) -> Pricebook:
    """The shipped price book, with the entries of the user file ``path`` laid over it."""
    shipped_label = f"stolentee/costs/data/{SHIPPED_PRICEBOOK}"
    shipped = _parse_book(
        parse_toml(shipped_text(SHIPPED_PRICEBOOK), error=PricebookError, label=shipped_label),
        file=shipped_label,
        shipped=True,
    )
    if path is None:
        return _finish(shipped, (shipped_label,))
    user_path = Path(path)
    label = str(user_path)
    user = _parse_book(
        read_toml(user_path, error=PricebookError, label=label), file=label, shipped=False
    )
    return _finish(_merge(shipped, user, file=label), (shipped_label, label))
