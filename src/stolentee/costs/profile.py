"""Usage profiles: what a shop does in a month, priced by the model against the price book.

A profile is a TOML file (see ``costs/data/profiles/scenario_a.toml`` for a commented example):
users, orders and their average value, the card mix, images per removal provider and output
size, storage (GB stored, GB served, Class A/B operations), database size, Redis commands,
Gemini requests, compute services (RAM and vCPU per instance for a whole month, or measured
GB-minutes and vCPU-minutes), the domain, and the plan chosen at each provider. Every section
is optional: a profile prices only what it describes.

The optional ``[seed]`` section records how the seed report *printed* a scenario (lines it left
out, amounts it stated that its own inputs do not give, claims it made); only the
``as-reported`` policy uses it, to reproduce the seed's figures, and the difference report
explains each such point.

:func:`load_profile` validates a file and raises :class:`~stolentee.costs.errors.ProfileError`
naming the file and the key of the first problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TypeVar

T = TypeVar("T")
ZERO = Decimal(0)
ONE = Decimal(1)

STORAGE_PROVIDERS = ("cloudflare-r2", "supabase", "railway-volume", "self-managed")
DATABASE_PROVIDERS = ("supabase", "self-managed")
REDIS_PROVIDERS = ("upstash", "self-managed")
AI_PROVIDERS = ("gemini",)
FRONTEND_PROVIDERS = ("vercel",)
COMPUTE_PROVIDERS = ("railway",)
CDN_PROVIDERS = ("cloudflare-cdn",)
PLAN_CHOICES = ("railway", "vercel", "supabase", "upstash", "removebg", "gemini")
SEED_CLAIMS = ("r2_egress_free_up_to_gb",)


@dataclass(frozen=True, slots=True)
class CardMix:
    """Shares (0..1) of charges with a surcharge: international cards, currency conversion."""

    international_share: Decimal = ZERO
    currency_conversion_share: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class Sales:
    orders_per_month: Decimal
    average_order_value_usd: Decimal
    card_mix: CardMix = CardMix()

    @property
    def revenue_usd(self) -> Decimal:
        return self.orders_per_month * self.average_order_value_usd


@dataclass(frozen=True, slots=True)
class Images:
    """Images a month by output size. ``credits``: Remove.bg credits as measured (its
    X-Credits-Charged), used instead of pricing ``full`` and ``preview``."""

    full: Decimal = ZERO
    preview: Decimal = ZERO
    credits: Decimal | None = None

    @property
    def count(self) -> Decimal:
        return self.full + self.preview


@dataclass(frozen=True, slots=True)
class Removal:
    removebg: Images = Images()
    self_hosted: Images = Images()


@dataclass(frozen=True, slots=True)
class Storage:
    provider: str
    stored_gb: Decimal = ZERO
    egress_gb: Decimal = ZERO
    class_a_operations: Decimal = ZERO
    class_b_operations: Decimal = ZERO
    objects: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Database:
    provider: str
    size_gb: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class Redis:
    provider: str
    commands: Decimal = ZERO
    data_gb: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class Ai:
    provider: str
    requests: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class Frontend:
    provider: str
    members: int = 1


@dataclass(frozen=True, slots=True)
class Service:
    """One compute service. Either ``instances`` x (``ram_gb``, ``vcpu``) for the whole month, or
    measured ``ram_gb_minutes`` and ``vcpu_minutes`` (all instances together)."""

    key: str
    name: str
    instances: Decimal = ONE
    ram_gb: Decimal = ZERO
    vcpu: Decimal = ZERO
    ram_gb_minutes: Decimal | None = None
    vcpu_minutes: Decimal | None = None
    scales_with_users: bool = False  # instances follow the scaling table (`costs scale`)

    @property
    def measured(self) -> bool:
        return self.ram_gb_minutes is not None


@dataclass(frozen=True, slots=True)
class Compute:
    provider: str
    services: tuple[Service, ...] = ()
    egress_gb: Decimal = ZERO
    volume_gb: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class SeedPresentation:
    """How the seed report printed this scenario (used by the ``as-reported`` policy only)."""

    report: str = ""
    omitted_lines: tuple[str, ...] = ()
    stated_usd: Mapping[str, Decimal] = field(default_factory=dict)
    claims: Mapping[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    title: str = ""
    description: str = ""
    source: str = ""
    users: int = 0
    commercial: bool = True  # a shop taking payments: plans for personal use do not apply
    plans: Mapping[str, str] = field(default_factory=dict)
    sales: Sales | None = None
    removal: Removal | None = None
    storage: Storage | None = None
    database: Database | None = None
    redis: Redis | None = None
    ai: Ai | None = None
    frontend: Frontend | None = None
    compute: Compute | None = None
    cdn: str | None = None
    domains: int = 0
    seed: SeedPresentation | None = None
    file: str = ""

    @property
    def label(self) -> str:
        return self.title or self.name

    def without_seed(self) -> Profile:
        return replace(self, seed=None)


# --- loading -----------------------------------------------------------------------------------
