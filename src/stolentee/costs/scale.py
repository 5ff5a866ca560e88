"""How cost grows with users: a profile scaled linearly, instances from the seed's table.

:func:`scale_profile` multiplies every per-user quantity of a profile (orders, images, storage,
operations, Redis commands, Gemini requests, database size, measured compute minutes) by
``users / profile.users``; services marked ``scales_with_users`` get the instances of the
seed's scaling table (``costs/data/scaling.toml``, upper end of each range) and the Railway
plan it names. Everything else (the removal worker, the frontend, the domain) stays as it is.
The seed section is dropped: its printed quirks apply to its printed figures only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from stolentee.costs._data import (
    Where,
    integer,
    no_unknown,
    parse_toml,
    read_toml,
    required,
    shipped_text,
    table,
    text,
)
from stolentee.costs.errors import CostDataError, ProfileError
from stolentee.costs.model import Policy, compute
from stolentee.costs.pricebook import Pricebook
from stolentee.costs.profile import Profile, Service

SHIPPED_SCALING = "scaling.toml"


@dataclass(frozen=True, slots=True)
class ScalingBand:
    max_users: int | None  # None: no upper bound
    instances_min: int
    instances_max: int
    railway_plan: str
    seed_cost: str = ""


@dataclass(frozen=True, slots=True)
class ScalingTable:
    bands: tuple[ScalingBand, ...]
    source: str = ""
    file: str = ""

    def band(self, users: int) -> tuple[ScalingBand, bool]:
        """The band for ``users`` and whether ``users`` lies beyond the table (past the last
        bounded band, in an open-ended one)."""
        for band in self.bands:
            if band.max_users is None or users <= band.max_users:
                return band, band.max_users is None
        return self.bands[-1], True


def load_scaling_table(path: str | Path | None = None) -> ScalingTable:
    """The seed's scaling table (shipped), or one of the same layout from ``path``."""
    if path is None:
        label = f"stolentee/costs/data/{SHIPPED_SCALING}"
        data = parse_toml(shipped_text(SHIPPED_SCALING), error=CostDataError, label=label)
    else:
        label = str(path)
        data = read_toml(Path(path), error=CostDataError, label=label)
    return parse_scaling_table(data, file=label)


def parse_scaling_table(data: dict[str, Any], *, file: str) -> ScalingTable:
    root = Where(file, error=CostDataError)
    no_unknown(data, ("source", "reference", "bands"), root)
    raw = data.get("bands")
    if not isinstance(raw, list) or not raw:
        raise (root / "bands").fail("must be a non-empty array of tables ([[bands]])")
    bands: list[ScalingBand] = []
    for index, item in enumerate(raw):
        where = root / "bands" / str(index)
        entry = table(item, where)
        no_unknown(entry, ("max_users", "instances", "railway_plan", "seed_cost"), where)
        required(entry, ("instances", "railway_plan"), where)
        instances = entry["instances"]
        if not isinstance(instances, list) or len(instances) != 2:
            raise (where / "instances").fail("must be [min, max]")
        low = integer(instances[0], where / "instances" / "0", minimum=1)
        high = integer(instances[1], where / "instances" / "1", minimum=low)
        max_users = None
        if "max_users" in entry:
            max_users = integer(entry["max_users"], where / "max_users", minimum=1)
            if bands and (bands[-1].max_users is None or max_users <= bands[-1].max_users):
                raise (where / "max_users").fail("must grow from band to band")
        elif index != len(raw) - 1:
            raise (where / "max_users").fail("is missing (only the last band is open-ended)")
        bands.append(
            ScalingBand(
                max_users=max_users,
                instances_min=low,
                instances_max=high,
                railway_plan=text(entry["railway_plan"], where / "railway_plan"),
                seed_cost=text(entry.get("seed_cost", ""), where / "seed_cost"),
            )
        )
    return ScalingTable(
        bands=tuple(bands), source=text(data.get("source", ""), root / "source"), file=file
    )


def scale_profile(profile: Profile, users: int, table_: ScalingTable) -> Profile:
    """``profile`` at ``users`` users (see the module docstring)."""
    if profile.users <= 0:
        raise ProfileError(
            f"{profile.file or profile.name}: profile.users: must be > 0 to scale the profile"
        )
    if users < 1:
        raise ValueError(f"users must be >= 1; got {users}")
    ratio = Decimal(users) / Decimal(profile.users)
    band, _ = table_.band(users)
    sales = profile.sales
    removal = profile.removal
    storage = profile.storage
    compute_ = profile.compute
    plans = dict(profile.plans)
    if compute_ is not None and any(s.scales_with_users for s in compute_.services):
        plans["railway"] = band.railway_plan

    def images(value: Any) -> Any:
        credits = None if value.credits is None else value.credits * ratio
        return replace(
            value, full=value.full * ratio, preview=value.preview * ratio, credits=credits
        )

    services: tuple[Service, ...] = ()
    if compute_ is not None:
        services = tuple(
            (
                replace(
                    s,
                    ram_gb_minutes=s.ram_gb_minutes * ratio,
                    vcpu_minutes=(s.vcpu_minutes or Decimal(0)) * ratio,
                )
                if s.measured and s.ram_gb_minutes is not None
                else replace(s, instances=Decimal(band.instances_max))
            )
            if s.scales_with_users
            else s
            for s in compute_.services
        )
    return replace(
        profile,
        users=users,
        plans=plans,
        sales=None
        if sales is None
        else replace(sales, orders_per_month=sales.orders_per_month * ratio),
        removal=None
        if removal is None
        else replace(
            removal, removebg=images(removal.removebg), self_hosted=images(removal.self_hosted)
        ),
        storage=None
        if storage is None
        else replace(
            storage,
            stored_gb=storage.stored_gb * ratio,
            egress_gb=storage.egress_gb * ratio,
            class_a_operations=storage.class_a_operations * ratio,
            class_b_operations=storage.class_b_operations * ratio,
            objects=None if storage.objects is None else storage.objects * ratio,
        ),
        database=None
        if profile.database is None
        else replace(profile.database, size_gb=profile.database.size_gb * ratio),
        redis=None
        if profile.redis is None
        else replace(
            profile.redis,
            commands=profile.redis.commands * ratio,
            data_gb=profile.redis.data_gb * ratio,
        ),
        ai=None
        if profile.ai is None
        else replace(profile.ai, requests=profile.ai.requests * ratio),
        compute=None if compute_ is None else replace(compute_, services=services),
        seed=None,
    )


@dataclass(frozen=True, slots=True)
class ScalePoint:
    name: str
    label: str
    users: int
    instances: Decimal  # of the services that scale with users (the backend)
    railway_plan: str
    beyond_table: bool
    total: Decimal
    payment_fees: Decimal
    infrastructure: Decimal

    @property
    def per_user_total(self) -> Decimal:
        return self.total / self.users

    @property
    def per_user_infrastructure(self) -> Decimal:
        return self.infrastructure / self.users


@dataclass(frozen=True, slots=True)
class ScaleReport:
    policy: Policy
    table: ScalingTable
    points: tuple[ScalePoint, ...]
    notes: tuple[str, ...] = ()

    def scenario_names(self) -> list[str]:
        names: list[str] = []
        for point in self.points:
            if point.name not in names:
                names.append(point.name)
        return names


def scale_costs(
    book: Pricebook,
    profiles: Sequence[Profile],
    users: Sequence[int],
    *,
    policy: Policy,
    table_: ScalingTable | None = None,
) -> ScaleReport:
    """Each profile priced at each number of ``users``."""
    if not users:
        raise ValueError("give at least one number of users")
    scaling = table_ or load_scaling_table()
    points: list[ScalePoint] = []
    beyond = False
    for profile in profiles:
        for count in sorted(set(users)):
            scaled = scale_profile(profile, count, scaling)
            costs = compute(book, scaled, policy)
            _, past = scaling.band(count)
            scaling_services = [
                s
                for s in (scaled.compute.services if scaled.compute else ())
                if s.scales_with_users
            ]
            instances = sum((s.instances for s in scaling_services), Decimal(0))
            beyond = beyond or past
            points.append(
                ScalePoint(
                    name=profile.name,
                    label=profile.label,
                    users=count,
                    instances=instances,
                    railway_plan=scaled.plans.get("railway", "-"),
                    beyond_table=past,
                    total=costs.total,
                    payment_fees=costs.payment_fees,
                    infrastructure=costs.infrastructure,
                )
            )
    notes = []
    if beyond:
        last = scaling.bands[-1]
        notes.append(
            f"The seed's table ends with an open range ({last.instances_min}-"
            f"{last.instances_max} instances); beyond it, measure the capacity."
        )
    return ScaleReport(policy=policy, table=scaling, points=tuple(points), notes=tuple(notes))
