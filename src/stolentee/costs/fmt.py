"""Formatting money, quantities and percentages for formulas and reports (exact decimals)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")


def cents(value: Decimal) -> Decimal:
    """``value`` rounded half-up to the cent."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def usd(value: Decimal) -> str:
    """Money to the cent: ``$2,001.00``, ``-$1.00``."""
    rounded = cents(value)
    sign = "-" if rounded < 0 else ""
    return f"{sign}${abs(rounded):,.2f}"


def usd_exact(value: Decimal) -> str:
    """Money with every digit it has, at least to the cent: ``$0.855``, ``$0.015``, ``$4.50``."""
    normal = value.normalize()
    if normal.as_tuple().exponent >= -2:  # type: ignore[operator]  # finite: an int exponent
        normal = normal.quantize(CENT)
    sign = "-" if normal < 0 else ""
    return f"{sign}${abs(normal):,f}"


def quantity(value: Decimal) -> str:
    """A quantity without trailing zeros, with thousands separators: ``10,000``, ``0.5``."""
    normal = value.normalize()
    if normal == normal.to_integral_value():
        normal = normal.quantize(Decimal(1))
    return f"{normal:,f}"


def percent(value: Decimal, places: int = 2) -> str:
    """A percentage (already x100) rounded half-up: ``45.62%``."""
    step = Decimal(1).scaleb(-places)
    return f"{value.quantize(step, rounding=ROUND_HALF_UP):,f}%"
