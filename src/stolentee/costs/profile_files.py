"""Reading usage profiles: the shipped scenarios and an operator's own TOML file, every section
checked, each problem named with its place in the file."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from stolentee.costs._data import (
    Where,
    boolean,
    integer,
    no_unknown,
    number,
    parse_toml,
    read_toml,
    required,
    shipped_names,
    shipped_text,
    shown,
    strings,
    table,
    text,
)
from stolentee.costs.errors import ProfileError
from stolentee.costs.profile import (
    AI_PROVIDERS,
    CDN_PROVIDERS,
    COMPUTE_PROVIDERS,
    DATABASE_PROVIDERS,
    FRONTEND_PROVIDERS,
    PLAN_CHOICES,
    REDIS_PROVIDERS,
    SEED_CLAIMS,
    STORAGE_PROVIDERS,
    Ai,
    CardMix,
    Compute,
    Database,
    Frontend,
    Images,
    Profile,
    Redis,
    Removal,
    Sales,
    SeedPresentation,
    Service,
    Storage,
    T,
)

SHIPPED_PROFILES_DIR = "profiles"


_SECTIONS = (
    "profile",
    "plans",
    "sales",
    "removal",
    "storage",
    "database",
    "redis",
    "ai",
    "frontend",
    "compute",
    "cdn",
    "domain",
    "seed",
)


def load_profile(path: str | Path) -> Profile:
    """A profile from a TOML file (see the module docstring)."""
    file = Path(path)
    label = str(file)
    return parse_profile(read_toml(file, error=ProfileError, label=label), file=label)


def shipped_profile_names() -> tuple[str, ...]:
    """Names of the shipped profiles: ``scenario_a``, ``scenario_b``."""
    return shipped_names(SHIPPED_PROFILES_DIR)


def load_shipped_profile(name: str) -> Profile:
    """A shipped profile by name (``scenario_a``, ``scenario_b``)."""
    names = shipped_profile_names()
    if name not in names:
        raise ProfileError(f"no shipped profile {name!r} (shipped: {', '.join(names)})")
    label = f"stolentee/costs/data/{SHIPPED_PROFILES_DIR}/{name}.toml"
    text_ = shipped_text(SHIPPED_PROFILES_DIR, f"{name}.toml")
    return parse_profile(parse_toml(text_, error=ProfileError, label=label), file=label)


def default_profiles() -> tuple[Profile, ...]:
    """The seed's two scenarios, baseline (A) first."""
    return tuple(load_shipped_profile(name) for name in shipped_profile_names())


def resolve_profile(value: str) -> Profile:
    """``value`` as a file when one exists there, else as the name of a shipped profile."""
    candidate = Path(value)
    if candidate.exists() or value not in shipped_profile_names():
        return load_profile(candidate)
    return load_shipped_profile(value)


def parse_profile(data: Mapping[str, Any], *, file: str) -> Profile:
    """A profile from parsed TOML; ``file`` names it in errors."""
    root = Where(file, error=ProfileError)
    no_unknown(data, _SECTIONS, root)
    head = table(data.get("profile"), root / "profile") if "profile" in data else None
    if head is None:
        raise (root / "profile").fail("is missing (it needs at least `name`)")
    where = root / "profile"
    no_unknown(head, ("name", "title", "description", "source", "users", "commercial"), where)
    required(head, ("name",), where)
    name = text(head["name"], where / "name").strip()
    if not name:
        raise (where / "name").fail("must not be empty")
    return Profile(
        name=name,
        title=text(head.get("title", ""), where / "title"),
        description=text(head.get("description", ""), where / "description"),
        source=text(head.get("source", ""), where / "source"),
        users=integer(head.get("users", 0), where / "users"),
        commercial=boolean(head.get("commercial", True), where / "commercial"),
        plans=_plans(data.get("plans", {}), root / "plans"),
        sales=_section(data, "sales", root, _sales),
        removal=_section(data, "removal", root, _removal),
        storage=_section(data, "storage", root, _storage),
        database=_section(data, "database", root, _database),
        redis=_section(data, "redis", root, _redis),
        ai=_section(data, "ai", root, _ai),
        frontend=_section(data, "frontend", root, _frontend),
        compute=_section(data, "compute", root, _compute),
        cdn=_section(data, "cdn", root, _cdn),
        domains=_section(data, "domain", root, _domain) or 0,
        seed=_section(data, "seed", root, _seed),
        file=file,
    )


def _section(
    data: Mapping[str, Any], name: str, root: Where, parse: Callable[[Mapping[str, Any], Where], T]
) -> T | None:
    if name not in data:
        return None
    where = root / name
    return parse(table(data[name], where), where)


def _provider(entry: Mapping[str, Any], allowed: tuple[str, ...], where: Where) -> str:
    required(entry, ("provider",), where)
    value = text(entry["provider"], where / "provider")
    if value not in allowed:
        raise (where / "provider").fail(f"must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _plans(raw: object, where: Where) -> dict[str, str]:
    entry = table(raw, where)
    no_unknown(entry, PLAN_CHOICES, where)
    return {key: text(value, where / key) for key, value in entry.items()}


_SHARE = Decimal(1)


def _sales(entry: Mapping[str, Any], where: Where) -> Sales:
    no_unknown(entry, ("orders_per_month", "average_order_value_usd", "card_mix"), where)
    required(entry, ("orders_per_month", "average_order_value_usd"), where)
    mix = CardMix()
    if "card_mix" in entry:
        mix_where = where / "card_mix"
        raw = table(entry["card_mix"], mix_where)
        no_unknown(raw, ("international_share", "currency_conversion_share"), mix_where)
        mix = CardMix(
            international_share=number(
                raw.get("international_share", 0),
                mix_where / "international_share",
                maximum=_SHARE,
            ),
            currency_conversion_share=number(
                raw.get("currency_conversion_share", 0),
                mix_where / "currency_conversion_share",
                maximum=_SHARE,
            ),
        )
    return Sales(
        orders_per_month=number(entry["orders_per_month"], where / "orders_per_month"),
        average_order_value_usd=number(
            entry["average_order_value_usd"], where / "average_order_value_usd"
        ),
        card_mix=mix,
    )


def _images(raw: object, where: Where) -> Images:
    entry = table(raw, where)
    no_unknown(entry, ("full", "preview", "credits"), where)
    credits = entry.get("credits")
    return Images(
        full=number(entry.get("full", 0), where / "full"),
        preview=number(entry.get("preview", 0), where / "preview"),
        credits=None if credits is None else number(credits, where / "credits"),
    )


def _removal(entry: Mapping[str, Any], where: Where) -> Removal:
    no_unknown(entry, ("removebg", "self_hosted"), where)
    return Removal(
        removebg=_images(entry.get("removebg", {}), where / "removebg"),
        self_hosted=_images(entry.get("self_hosted", {}), where / "self_hosted"),
    )


def _storage(entry: Mapping[str, Any], where: Where) -> Storage:
    names = ("stored_gb", "egress_gb", "class_a_operations", "class_b_operations")
    no_unknown(entry, ("provider", *names, "objects"), where)
    objects = entry.get("objects")
    values = {key: number(entry.get(key, 0), where / key) for key in names}
    return Storage(
        provider=_provider(entry, STORAGE_PROVIDERS, where),
        stored_gb=values["stored_gb"],
        egress_gb=values["egress_gb"],
        class_a_operations=values["class_a_operations"],
        class_b_operations=values["class_b_operations"],
        objects=None if objects is None else number(objects, where / "objects"),
    )


def _database(entry: Mapping[str, Any], where: Where) -> Database:
    no_unknown(entry, ("provider", "size_gb"), where)
    return Database(
        provider=_provider(entry, DATABASE_PROVIDERS, where),
        size_gb=number(entry.get("size_gb", 0), where / "size_gb"),
    )


def _redis(entry: Mapping[str, Any], where: Where) -> Redis:
    no_unknown(entry, ("provider", "commands", "data_gb"), where)
    return Redis(
        provider=_provider(entry, REDIS_PROVIDERS, where),
        commands=number(entry.get("commands", 0), where / "commands"),
        data_gb=number(entry.get("data_gb", 0), where / "data_gb"),
    )


def _ai(entry: Mapping[str, Any], where: Where) -> Ai:
    no_unknown(entry, ("provider", "requests"), where)
    return Ai(
        provider=_provider(entry, AI_PROVIDERS, where),
        requests=number(entry.get("requests", 0), where / "requests"),
    )


def _frontend(entry: Mapping[str, Any], where: Where) -> Frontend:
    no_unknown(entry, ("provider", "members"), where)
    return Frontend(
        provider=_provider(entry, FRONTEND_PROVIDERS, where),
        members=integer(entry.get("members", 1), where / "members", minimum=1),
    )


def _service(raw: object, where: Where) -> Service:
    entry = table(raw, where)
    allowed = (
        "key",
        "name",
        "instances",
        "ram_gb",
        "vcpu",
        "ram_gb_minutes",
        "vcpu_minutes",
        "scales_with_users",
    )
    no_unknown(entry, allowed, where)
    required(entry, ("name",), where)
    name = text(entry["name"], where / "name").strip()
    if not name:
        raise (where / "name").fail("must not be empty")
    key = text(entry.get("key", _slug(name)), where / "key")
    if not key or _slug(key) != key:
        raise (where / "key").fail(f"must be lower-case letters, digits and dashes; got {key!r}")
    sized = any(name in entry for name in ("ram_gb", "vcpu", "instances"))
    measured = any(name in entry for name in ("ram_gb_minutes", "vcpu_minutes"))
    if sized == measured:
        raise where.fail(
            "give either ram_gb and vcpu (per instance, whole month; instances optional) or "
            "ram_gb_minutes and vcpu_minutes (measured), not both or neither"
        )
    if measured:
        required(entry, ("ram_gb_minutes", "vcpu_minutes"), where)
        return Service(
            key=key,
            name=name,
            ram_gb_minutes=number(entry["ram_gb_minutes"], where / "ram_gb_minutes"),
            vcpu_minutes=number(entry["vcpu_minutes"], where / "vcpu_minutes"),
            scales_with_users=boolean(
                entry.get("scales_with_users", False), where / "scales_with_users"
            ),
        )
    required(entry, ("ram_gb", "vcpu"), where)
    return Service(
        key=key,
        name=name,
        instances=number(entry.get("instances", 1), where / "instances"),
        ram_gb=number(entry["ram_gb"], where / "ram_gb"),
        vcpu=number(entry["vcpu"], where / "vcpu"),
        scales_with_users=boolean(
            entry.get("scales_with_users", False), where / "scales_with_users"
        ),
    )


def _compute(entry: Mapping[str, Any], where: Where) -> Compute:
    no_unknown(entry, ("provider", "services", "egress_gb", "volume_gb"), where)
    raw_services = entry.get("services", [])
    if not isinstance(raw_services, list):
        raise (where / "services").fail(
            f"must be an array of tables ([[compute.services]]); got {shown(raw_services)}"
        )
    services = tuple(
        _service(item, where / "services" / str(index)) for index, item in enumerate(raw_services)
    )
    keys = [service.key for service in services]
    for index, key in enumerate(keys):
        if key in keys[:index]:
            raise (where / "services" / str(index) / "key").fail(f"duplicate service key {key!r}")
    return Compute(
        provider=_provider(entry, COMPUTE_PROVIDERS, where),
        services=services,
        egress_gb=number(entry.get("egress_gb", 0), where / "egress_gb"),
        volume_gb=number(entry.get("volume_gb", 0), where / "volume_gb"),
    )


def _cdn(entry: Mapping[str, Any], where: Where) -> str:
    no_unknown(entry, ("provider",), where)
    return _provider(entry, CDN_PROVIDERS, where)


def _domain(entry: Mapping[str, Any], where: Where) -> int:
    no_unknown(entry, ("count",), where)
    return integer(entry.get("count", 1), where / "count")


def _seed(entry: Mapping[str, Any], where: Where) -> SeedPresentation:
    no_unknown(entry, ("report", "omitted_lines", "stated_usd", "claims"), where)
    stated_where = where / "stated_usd"
    stated = table(entry.get("stated_usd", {}), stated_where)
    claims_where = where / "claims"
    claims = table(entry.get("claims", {}), claims_where)
    no_unknown(claims, SEED_CLAIMS, claims_where)
    return SeedPresentation(
        report=text(entry.get("report", ""), where / "report"),
        omitted_lines=strings(entry.get("omitted_lines", []), where / "omitted_lines"),
        stated_usd={key: number(value, stated_where / key) for key, value in stated.items()},
        claims={key: number(value, claims_where / key) for key, value in claims.items()},
    )


def _slug(value: str) -> str:
    out = []
    for char in value.lower():
        out.append(char if char.isascii() and char.isalnum() else "-")
    return "-".join(part for part in "".join(out).split("-") if part)
