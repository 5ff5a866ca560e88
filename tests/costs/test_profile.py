"""Usage profiles: the shipped scenarios, your own usage, clear errors for bad files."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from stolentee.costs.errors import ProfileError
from stolentee.costs.model import AS_REPORTED, CORRECTED, compute
from stolentee.costs.pricebook import Pricebook
from stolentee.costs.profile import Profile
from stolentee.costs.profile_files import (
    load_profile,
    load_shipped_profile,
    resolve_profile,
    shipped_profile_names,
)

WriteToml = Callable[..., Path]

MINIMAL = """
[profile]
name = "mine"
users = 250

[plans]
removebg = "subscription"

[sales]
orders_per_month = 400
average_order_value_usd = 25.50

[removal]
removebg = { full = 100, preview = 20 }
self_hosted = { full = 1000 }

[storage]
provider = "cloudflare-r2"
stored_gb = 12.5
egress_gb = 300
class_a_operations = 50_000
"""


def test_the_shipped_scenarios(scenario_a: Profile, scenario_b: Profile) -> None:
    assert shipped_profile_names() == ("scenario_a", "scenario_b")
    for profile in (scenario_a, scenario_b):
        assert profile.users == 1000 and profile.commercial
        assert profile.sales is not None and profile.sales.orders_per_month == 2000
        assert profile.sales.average_order_value_usd == Decimal("30.00")
        assert profile.storage is not None and profile.storage.stored_gb == 57
        assert profile.redis is not None and profile.redis.commands == 405_000
        assert profile.ai is not None and profile.compute is not None
        assert profile.seed is not None
    assert scenario_a.removal is not None and scenario_a.removal.removebg.full == 10_000
    assert scenario_b.removal is not None and scenario_b.removal.self_hosted.full == 10_000
    assert scenario_b.plans["vercel"] == "hobby"
    assert scenario_b.seed is not None and scenario_b.seed.omitted_lines == ("domain", "supabase")


def test_your_own_usage(write_toml: WriteToml, book: Pricebook) -> None:
    profile = load_profile(write_toml(MINIMAL, "mine.toml"))
    assert profile.name == "mine" and profile.users == 250
    assert profile.storage is not None and profile.storage.stored_gb == Decimal("12.5")
    costs = compute(book, profile, CORRECTED)
    assert [line.key for line in costs.lines] == [
        "cloudflare-r2",
        "removebg",
        "self-hosted-removal",
        "stripe",
    ]
    assert costs.line("removebg").amount == Decimal("21.00")  # type: ignore[union-attr]
    assert costs.line("cloudflare-r2").amount == Decimal("0.05")  # type: ignore[union-attr]
    # 400 x (25.50 x 2.9% + 0.30) = 415.80
    assert costs.payment_fees == Decimal("415.80")
    assert compute(book, profile, AS_REPORTED).total > costs.total  # no free tier there


def test_resolve_profile_takes_a_file_or_a_shipped_name(write_toml: WriteToml) -> None:
    assert resolve_profile("scenario_b").name == "scenario_b"
    path = write_toml(MINIMAL)
    assert resolve_profile(str(path)).name == "mine"
    with pytest.raises(ProfileError, match="no such file"):
        resolve_profile("scenario_z")
    with pytest.raises(ProfileError, match="no shipped profile 'scenario_z'"):
        load_shipped_profile("scenario_z")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("users = 250", "users = -5"), "profile.users: must be a whole number >= 0; got -5"),
        (("stored_gb = 12.5", "stored_gb = -12.5"), "storage.stored_gb: must be a number >= 0"),
        (("stored_gb = 12.5", "stored_gbs = 12.5"), "storage.stored_gbs: unknown key"),
        (
            ('provider = "cloudflare-r2"', 'provider = "dropbox"'),
            "storage.provider: must be one of cloudflare-r2, supabase, railway-volume, "
            "self-managed; got 'dropbox'",
        ),
        (('name = "mine"', 'title = "mine"'), "profile.name: is missing"),
        (
            ("orders_per_month = 400", "orders_per_month = 'lots'"),
            "sales.orders_per_month: must be a number >= 0; got 'lots'",
        ),
        (
            ("[removal]", "[sales.card_mix]\ninternational_share = 1.5\n[removal]"),
            "sales.card_mix.international_share: must be a number from 0 to 1; got '1.5'",
        ),
        (('removebg = "subscription"', 'stripe = "plus"'), "plans.stripe: unknown key"),
        (("[storage]", "[storage\n"), "not valid TOML"),
        (("full = 1000", "full = 1000, huge = 3"), "removal.self_hosted.huge: unknown key"),
    ],
)
def test_bad_profiles_name_the_file_and_the_key(
    write_toml: WriteToml, change: tuple[str, str], message: str
) -> None:
    old, new = change
    assert old in MINIMAL
    path = write_toml(MINIMAL.replace(old, new, 1), "bad-profile.toml")
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    assert caught.value.detail.startswith(f"{path}: ")
    assert message in caught.value.detail


def test_compute_services_take_one_form(write_toml: WriteToml) -> None:
    both = MINIMAL + (
        '\n[compute]\nprovider = "railway"\n[[compute.services]]\nname = "API"\n'
        "ram_gb = 1\nvcpu = 1\nram_gb_minutes = 10\n"
    )
    with pytest.raises(ProfileError, match=r"compute\.services\.0: give either ram_gb and vcpu"):
        load_profile(write_toml(both))
    measured = MINIMAL + (
        '\n[compute]\nprovider = "railway"\n[[compute.services]]\nname = "API Server"\n'
        "ram_gb_minutes = 43200\nvcpu_minutes = 21600\n"
    )
    profile = load_profile(write_toml(measured))
    assert profile.compute is not None
    (service,) = profile.compute.services
    assert service.key == "api-server" and service.measured


def test_seed_section_must_name_lines_of_the_profile(
    write_toml: WriteToml, book: Pricebook
) -> None:
    path = write_toml(MINIMAL + '\n[seed]\nomitted_lines = ["vercel"]\n')
    with pytest.raises(ProfileError, match=r"seed\.omitted_lines: no line 'vercel'"):
        compute(book, load_profile(path), AS_REPORTED)


def test_a_profile_file_that_is_not_toml_or_missing(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="no such file"):
        load_profile(tmp_path / "none.toml")
    with pytest.raises(ProfileError, match="is a directory"):
        load_profile(tmp_path)
