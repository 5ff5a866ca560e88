"""Reading price books: the shipped TOML file, an operator's overrides merged over it, every figure
checked for its unit, source and date."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
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
from stolentee.costs.pricebook import (
    OPTIONAL_PLAN_FIGURES,
    PLAN_FLAGS,
    PLAN_PROVIDERS,
    PROVIDERS,
    REQUIRED_FIGURES,
    REQUIRED_PLAN_FIGURES,
    Figure,
    Flag,
    Plan,
    Pricebook,
    Provider,
    Source,
)

SHIPPED_PRICEBOOK = "pricebook.toml"


SCHEMA_VERSION = 1


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
