"""Cost by users: the seed's scaling table, linear usage, cost per user."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from stolentee.costs.errors import CostDataError, ProfileError
from stolentee.costs.model import CORRECTED, compute
from stolentee.costs.pricebook import Pricebook
from stolentee.costs.profile import Profile
from stolentee.costs.scale import load_scaling_table, scale_costs, scale_profile

WriteToml = Callable[..., Path]


def test_the_seed_s_scaling_table() -> None:
    table = load_scaling_table()
    assert [
        (b.max_users, b.instances_min, b.instances_max, b.railway_plan) for b in table.bands
    ] == [
        (100, 1, 1, "hobby"),
        (500, 1, 1, "pro"),
        (1000, 1, 2, "pro"),
        (None, 2, 3, "pro"),
    ]
    assert table.band(1000) == (table.bands[2], False)
    assert table.band(5000) == (table.bands[3], True)


def test_scaling_to_the_profile_s_own_users_changes_nothing(
    book: Pricebook, scenario_b: Profile
) -> None:
    scaled = scale_profile(scenario_b, 1000, load_scaling_table())
    assert compute(book, scaled, CORRECTED).total == Decimal("2447.52")


def test_usage_grows_with_users_and_instances_follow_the_table(
    book: Pricebook, scenario_a: Profile, scenario_b: Profile
) -> None:
    report = scale_costs(book, [scenario_a, scenario_b], [100, 500, 1000, 5000], policy=CORRECTED)
    points = {(p.name, p.users): p for p in report.points}
    assert len(points) == 8
    assert [points["scenario_b", n].instances for n in (100, 500, 1000, 5000)] == [1, 1, 2, 3]
    assert points["scenario_b", 100].railway_plan == "hobby"
    assert points["scenario_b", 5000].beyond_table and report.notes
    assert points["scenario_b", 1000].total == Decimal("2447.52")
    # Scenario A at 5,000 users: 50,000 Remove.bg images ($10,000) dominate.
    a5000 = points["scenario_a", 5000]
    assert a5000.infrastructure > Decimal(10_000)
    # Cost per user falls with scale for B (fixed costs spread), and B stays far below A.
    per_user = [points["scenario_b", n].per_user_infrastructure for n in (100, 500, 1000, 5000)]
    assert per_user == sorted(per_user, reverse=True)
    for n in (100, 500, 1000, 5000):
        assert points["scenario_b", n].infrastructure < points["scenario_a", n].infrastructure


def test_scaling_needs_users_in_the_profile(book: Pricebook, scenario_b: Profile) -> None:
    from dataclasses import replace

    with pytest.raises(ProfileError, match=r"profile\.users: must be > 0"):
        scale_profile(replace(scenario_b, users=0), 10, load_scaling_table())


def test_a_bad_scaling_table(write_toml: WriteToml) -> None:
    path = write_toml("[[bands]]\ninstances = [2, 1]\nrailway_plan = 'pro'\n", "scaling.toml")
    with pytest.raises(
        CostDataError, match=r"scaling\.toml: bands\.0\.instances\.1: must be a whole"
    ):
        load_scaling_table(path)
