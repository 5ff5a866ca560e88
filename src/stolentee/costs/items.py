"""The priced items of the cost model: policies, charges, line items."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from stolentee.costs.fmt import CENT, cents

ZERO = Decimal(0)
TIMES = "\N{MULTIPLICATION SIGN}"  # in formulas: "10,000 images TIMES $0.20"
MINUTES_PER_MONTH = Decimal(30 * 24 * 60)  # Railway meters by the minute; a 30-day month

INFRASTRUCTURE = "infrastructure"
PAYMENT = "payment"


@dataclass(frozen=True, slots=True)
class Policy:
    """How a profile is priced (see the module docstring)."""

    name: str
    description: str
    free_tiers: bool  # give away each provider's free tier
    billing_units: bool  # round usage up to the provider's billing unit
    plan_terms: bool  # a commercial shop cannot use a plan for non-commercial use
    seed_presentation: bool  # apply the profile's [seed] section
    float_rounding: bool  # amounts in binary floating point, rounded like toFixed(2)
    payment_fees_in_infrastructure: bool  # "infrastructure share" counts payment fees
    net_subtracts_payment_fees_again: bool  # the seed's "net revenue"

    def round(self, amount: Decimal) -> Decimal:
        """An exact amount rounded to the cent as this policy does."""
        if self.float_rounding:
            return Decimal(float(amount)).quantize(CENT, rounding=ROUND_HALF_UP)
        return cents(amount)


AS_REPORTED = Policy(
    name="as-reported",
    description="the seed report's method: no free tiers, its rounding, its presentation",
    free_tiers=False,
    billing_units=False,
    plan_terms=False,
    seed_presentation=True,
    float_rounding=True,
    payment_fees_in_infrastructure=True,
    net_subtracts_payment_fees_again=True,
)
CORRECTED = Policy(
    name="corrected",
    description="the price book applied faithfully: free tiers, billing units, plan terms",
    free_tiers=True,
    billing_units=True,
    plan_terms=True,
    seed_presentation=False,
    float_rounding=False,
    payment_fees_in_infrastructure=False,
    net_subtracts_payment_fees_again=False,
)
POLICIES: dict[str, Policy] = {policy.name: policy for policy in (AS_REPORTED, CORRECTED)}


def get_policy(name: str) -> Policy:
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}; got {name!r}") from None


# --- results -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Charge:
    """``quantity`` x ``unit_price`` per ``per`` units = ``amount`` (exact, not rounded)."""

    label: str
    quantity: Decimal
    unit: str
    unit_price: Decimal
    amount: Decimal
    formula: str
    per: Decimal = Decimal(1)
    figures: tuple[str, ...] = ()  # references of the price-book figures used
    verified: bool = True


@dataclass(frozen=True, slots=True)
class Adjustment:
    """Why a line differs between the two policies; ``id`` as listed by :func:`differences`."""

    id: str
    reason: str


@dataclass(frozen=True, slots=True)
class LineItem:
    """One service's monthly cost. ``quantity``/``unit``/``unit_price`` are those of its charge
    when it has exactly one, else None/""/None (see ``charges``)."""

    key: str
    name: str
    provider: str
    category: str  # INFRASTRUCTURE or PAYMENT
    quantity: Decimal | None
    unit: str
    unit_price: Decimal | None
    amount: Decimal  # rounded to the cent as the policy does
    exact_amount: Decimal  # the charges added up, before rounding
    formula: str
    notes: tuple[str, ...] = ()
    charges: tuple[Charge, ...] = ()
    adjustments: tuple[Adjustment, ...] = ()
    verified: bool = True  # False when an amount rests on an unverified figure

    @property
    def figures(self) -> tuple[str, ...]:
        return tuple(ref for charge in self.charges for ref in charge.figures)
