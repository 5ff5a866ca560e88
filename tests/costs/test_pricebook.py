"""The price book: every figure sourced and dated, user overrides, clear errors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from stolentee.costs.errors import CostDataError, PricebookError
from stolentee.costs.model import CORRECTED, compute
from stolentee.costs.pricebook import (
    PLAN_PROVIDERS,
    PROVIDERS,
    REQUIRED_FIGURES,
    REQUIRED_PLAN_FIGURES,
    Pricebook,
)
from stolentee.costs.pricebook_files import load_pricebook
from stolentee.costs.profile import Profile

WriteToml = Callable[..., Path]


def test_every_figure_has_a_known_source_a_date_and_a_verification(book: Pricebook) -> None:
    figures = list(book.iter_figures())
    assert len(figures) > 40
    for figure in figures:
        assert figure.source in book.sources, figure.key
        assert isinstance(figure.as_of, date), figure.key
        assert isinstance(figure.verified, bool), figure.key
        assert figure.unit, figure.key
        assert isinstance(figure.value, Decimal)
    for flag in book.iter_flags():
        assert flag.source in book.sources, flag.key
    assert set(book.providers) == set(PROVIDERS)
    for provider_id in PLAN_PROVIDERS:
        for plan in book.provider(provider_id).plans.values():
            assert set(REQUIRED_PLAN_FIGURES[provider_id]) <= set(plan.figures)
    for provider_id, names in REQUIRED_FIGURES.items():
        assert set(names) <= set(book.provider(provider_id).figures)


def test_the_facts_of_pricing_facts_md(book: Pricebook) -> None:
    r2 = book.provider("cloudflare-r2")
    assert r2.figure("storage_usd_per_gb_month").value == Decimal("0.015")
    assert r2.figure("class_a_usd_per_million").value == Decimal("4.50")
    assert r2.figure("class_b_usd_per_million").value == Decimal("0.36")
    assert r2.figure("egress_usd_per_gb").value == 0
    assert r2.figure("free_storage_gb_month").value == 10
    assert "rounded up" in r2.rounding
    supabase = book.provider("supabase").plan("pro")
    assert supabase.figure("fee_usd_per_month").value == 25
    assert supabase.figure("storage_overage_usd_per_gb").value == Decimal("0.021")
    assert book.provider("railway").figure("ram_usd_per_gb_month").value == 10
    assert book.provider("vercel").plan("hobby").flag("commercial_use", True) is False
    assert book.provider("upstash").plan("free").figure("included_commands").value == 500_000
    stripe = book.provider("stripe")
    assert stripe.figure("percent_per_charge").value == Decimal("2.9")
    # Unverified: the seed's Remove.bg price, the Stripe transcription, Vercel's fee...
    unverified = {figure.ref for figure in book.unverified()}
    assert "removebg.subscription.usd_per_credit" in unverified
    assert "stripe.percent_per_charge" in unverified
    assert "cloudflare-r2.storage_usd_per_gb_month" not in unverified


def test_a_user_file_overrides_entries(write_toml: WriteToml, scenario_b: Profile) -> None:
    path = write_toml(
        """
[providers.cloudflare-r2.figures]
storage_usd_per_gb_month = { value = 0.02, as_of = 2027-01-01 }

[providers.vercel.plans.pro.figures.fee_usd_per_member_month]
value = 25
as_of = 2027-01-01
verified = true
source = "vercel-pro"
""",
        "prices.toml",
    )
    book = load_pricebook(path)
    assert book.files[-1] == str(path)
    figure = book.provider("cloudflare-r2").figure("storage_usd_per_gb_month")
    assert figure.value == Decimal("0.02") and not figure.verified
    assert figure.unit == "USD per GB-month"  # kept from the shipped figure
    assert figure.source == f"file:{path}" and book.sources[figure.source].reference == str(path)
    assert book.provider("vercel").plan("pro").figure("fee_usd_per_member_month").verified
    # Everything else is the shipped book; the model prices with the override.
    assert book.provider("railway").figure("vcpu_usd_per_month").value == 20
    b = compute(book, scenario_b, CORRECTED)
    assert b.line("cloudflare-r2").amount == Decimal("0.94")  # type: ignore[union-attr]  # 47 x 0.02
    assert b.line("vercel").amount == Decimal("25.00")  # type: ignore[union-attr]


def test_a_user_file_can_add_a_plan(write_toml: WriteToml) -> None:
    path = write_toml(
        """
[providers.removebg.plans.enterprise]
name = "Enterprise"
[providers.removebg.plans.enterprise.figures]
usd_per_credit = { value = 0.09, as_of = 2027-01-01 }
"""
    )
    plan = load_pricebook(path).provider("removebg").plan("enterprise")
    assert plan.name == "Enterprise" and plan.figure("usd_per_credit").value == Decimal("0.09")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[providers.cloudflare-r2.figures]\n"
            'storage_usd_per_gb_month = { value = "cheap", as_of = 2027-01-01 }\n',
            "providers.cloudflare-r2.figures.storage_usd_per_gb_month.value: must be a number "
            ">= 0; got 'cheap'",
        ),
        (
            "[providers.cloudflare-r2.figures]\n"
            "storage_usd_per_gb_month = { value = -1, as_of = 2027-01-01 }\n",
            "storage_usd_per_gb_month.value: must be a number >= 0; got -1",
        ),
        (
            "[providers.cloudflare-r2.figures]\nstorage_usd_per_gb_month = { value = 1 }\n",
            "providers.cloudflare-r2.figures.storage_usd_per_gb_month.as_of: is missing",
        ),
        (
            "[providers.cloudflare-r2.figures]\n"
            "storage_usd_per_gb_month = { value = 1, as_of = 'soon' }\n",
            "as_of: must be a date (YYYY-MM-DD); got 'soon'",
        ),
        (
            "[providers.backblaze]\nname = 'B2'\n",
            "providers.backblaze: unknown provider",
        ),
        (
            "[providers.cloudflare-r2.figures]\n"
            "storage_usd_per_tb = { value = 1, as_of = 2027-01-01 }\n",
            "providers.cloudflare-r2.figures.storage_usd_per_tb: unknown figure",
        ),
        (
            "[providers.cloudflare-r2.figures]\n"
            "storage_usd_per_gb_month = { value = 1, as_of = 2027-01-01, source = 'blog' }\n",
            "storage_usd_per_gb_month.source: unknown source 'blog'",
        ),
        (
            "[providers.removebg.plans.cheap.figures]\n",
            "providers.removebg.plans.cheap.figures.usd_per_credit: is missing",
        ),
        (
            "[providers.vercel.plans.pro.flags]\n"
            "commercial_use = { value = 'yes', as_of = 2027-01-01 }\n",
            "providers.vercel.plans.pro.flags.commercial_use.value: must be true or false",
        ),
        ("currency = 'EUR'\n", "currency: only USD is supported"),
        ("[providers.stripe\n", "not valid TOML"),
        ("surprise = 1\n", "surprise: unknown key"),
    ],
)
def test_bad_user_files_name_the_file_and_the_key(
    write_toml: WriteToml, text: str, message: str
) -> None:
    path = write_toml(text, "bad-prices.toml")
    with pytest.raises(PricebookError) as caught:
        load_pricebook(path)
    assert str(path) in caught.value.detail
    assert message in caught.value.detail


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CostDataError, match=r"nowhere\.toml: no such file"):
        load_pricebook(tmp_path / "nowhere.toml")
