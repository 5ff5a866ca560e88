"""The cost model on the seed's scenarios: its figures reproduced exactly (as-reported), then
corrected with the price book, and every one of the nine discrepancies explained."""

from __future__ import annotations

from dataclasses import replace
from decimal import ROUND_HALF_UP, Decimal

import pytest

from stolentee.costs.errors import ProfileError
from stolentee.costs.model import (
    AS_REPORTED,
    CORRECTED,
    SEED_DISCREPANCIES,
    build_report,
    compute,
    differences,
    get_policy,
    savings,
)
from stolentee.costs.model import TIMES as X
from stolentee.costs.pricebook import Pricebook
from stolentee.costs.profile import (
    CardMix,
    Compute,
    Images,
    Profile,
    Redis,
    Removal,
    Sales,
    Service,
    Storage,
)
from stolentee.costs.profile_files import default_profiles

D = Decimal


def pct(value: Decimal | None, places: str = "0.01") -> Decimal:
    assert value is not None
    return value.quantize(D(places), rounding=ROUND_HALF_UP)


# --- the seed's figures, as reported -----------------------------------------------------------


def test_as_reported_reproduces_the_seed_exactly(
    book: Pricebook, scenario_a: Profile, scenario_b: Profile
) -> None:
    a = compute(book, scenario_a, AS_REPORTED)
    b = compute(book, scenario_b, AS_REPORTED)
    assert a.total == D("4462.81")
    assert b.total == D("2426.84")
    saved = savings(a, b)
    assert saved.monthly == D("2035.97")
    assert pct(saved.percent) == D("45.62")
    assert saved.yearly == D("24431.64")
    assert saved.three_years == D("73294.92")


def test_as_reported_line_items_are_the_seed_s(
    book: Pricebook, scenario_a: Profile, scenario_b: Profile
) -> None:
    a = compute(book, scenario_a, AS_REPORTED)
    b = compute(book, scenario_b, AS_REPORTED)
    amounts_a = {line.name: line.amount for line in a.lines}
    assert amounts_a == {
        "Railway (Backend)": D("60.00"),
        "Railway (Worker)": D("15.00"),
        "Vercel (Frontend)": D("20.00"),
        "Supabase Storage": D("25.00"),
        "Upstash Redis": D("0.81"),
        "Gemini API": D("0.00"),
        "Remove.bg API": D("2001.00"),
        "Stripe (payment fees)": D("2340.00"),
        "Domain": D("1.00"),
    }
    amounts_b = {line.name: line.amount for line in b.lines}
    assert amounts_b == {
        "Railway (Backend)": D("60.00"),
        "Railway (Worker - rembg)": D("25.00"),
        "Vercel (Frontend)": D("0.00"),
        "Cloudflare R2": D("1.03"),
        "Upstash Redis": D("0.81"),
        "Gemini API": D("0.00"),
        "Self-hosted rembg": D("0.00"),
        "Stripe (payment fees)": D("2340.00"),
        "Cloudflare CDN": D("0.00"),
    }
    assert [line.key for line in b.omitted] == ["supabase", "domain"]
    # The seed's "ROI" figures, its way: infrastructure share with Stripe, net minus Stripe again.
    assert b.revenue == D("60000.00")
    assert pct(b.infrastructure_share, "0.1") == D("4.0")
    assert b.net_revenue == D("55233.16")
    assert pct(b.net_share, "0.1") == D("92.1")
    assert b.payment_fees == D("2340.00")
    assert b.infrastructure == D("86.84")


def test_stripe_and_upstash_formulas(book: Pricebook, scenario_a: Profile) -> None:
    a = compute(book, scenario_a, CORRECTED)
    stripe = a.line("stripe")
    assert stripe is not None and stripe.category == "payment"
    assert stripe.quantity == 2000 and stripe.unit_price == D("1.17")
    assert stripe.amount == D("2340.00")
    assert f"2,000 orders {X} ($30.00 {X} 2.9% + $0.30 = $1.17) = $2,340.00" in stripe.formula
    upstash = a.line("upstash")
    assert upstash is not None and upstash.amount == D("0.81")
    assert f"405,000 commands {X} $0.20/100K = $0.81" in upstash.formula
    assert any("Free plan" in note for note in upstash.notes)


def test_every_line_shows_its_formula_and_sources(
    book: Pricebook, scenario_a: Profile, scenario_b: Profile
) -> None:
    for profile in (scenario_a, scenario_b):
        for policy in (AS_REPORTED, CORRECTED):
            for line in compute(book, profile, policy).lines:
                assert line.formula and line.name and line.provider
                assert line.charges
                assert "$" in line.formula
    removebg = compute(book, scenario_a, CORRECTED).line("removebg")
    assert removebg is not None
    assert removebg.quantity == 10_000 and removebg.unit == "images"
    assert removebg.unit_price == D("0.20") and removebg.amount == D("2000.00")
    assert f"10,000 images {X} 1 credit {X} $0.20/credit = $2,000.00" in removebg.formula
    assert not removebg.verified  # $0.20 per credit is the seed's figure, not verified
    assert "removebg.subscription.usd_per_credit" in removebg.figures


# --- corrected ---------------------------------------------------------------------------------


def test_corrected_scenario_b_and_savings(
    book: Pricebook, scenario_a: Profile, scenario_b: Profile
) -> None:
    report = build_report(book, [scenario_a, scenario_b], policy=CORRECTED)
    a, b = report.scenarios
    assert b.total == D("2447.52")
    assert {line.key: line.amount for line in b.lines} == {
        "railway-backend": D("60.00"),
        "railway-worker": D("25.00"),
        "vercel": D("20.00"),
        "supabase": D("0.00"),
        "cloudflare-r2": D("0.71"),
        "upstash": D("0.81"),
        "gemini": D("0.00"),
        "self-hosted-removal": D("0.00"),
        "stripe": D("2340.00"),
        "cloudflare-cdn": D("0.00"),
        "domain": D("1.00"),
    }
    # The corrected B against the seed's A: $2,015.29/month (45.2%), ...
    (reference,) = report.reference_savings
    assert reference.baseline_total == D("4462.81")
    assert reference.monthly == D("2015.29")
    assert pct(reference.percent, "0.1") == D("45.2")
    assert reference.yearly == D("24183.48")
    assert reference.three_years == D("72550.44")
    # ... and with A's Remove.bg corrected to $2,000 as well: $2,014.29/month.
    assert a.total == D("4461.81")
    (both,) = report.savings
    assert both.monthly == D("2014.29")
    assert pct(both.percent, "0.1") == D("45.1")
    # Infrastructure without payment fees, and net revenue counting every cost once.
    assert b.infrastructure == D("107.52")
    assert b.net_revenue == D("57552.48")
    assert pct(b.net_share) == D("95.92")
    assert pct(b.infrastructure_share) == D("0.18")


def test_savings_without_payment_fees(
    book: Pricebook, scenario_a: Profile, scenario_b: Profile
) -> None:
    seed = savings(compute(book, scenario_a, AS_REPORTED), compute(book, scenario_b, AS_REPORTED))
    assert seed.baseline_without_payment_fees == D("2122.81")
    assert pct(seed.percent_without_payment_fees, "0.1") == D("95.9")  # 2,035.97 / 2,122.81


def test_the_nine_discrepancies_appear_in_the_difference_report(
    book: Pricebook, scenario_a: Profile, scenario_b: Profile
) -> None:
    found = differences(book, [scenario_a, scenario_b])
    by_id = {diff.id: diff for diff in found}
    assert set(SEED_DISCREPANCIES) == set(range(1, 10))
    for number, ident in SEED_DISCREPANCIES.items():
        assert ident in by_id, f"discrepancy {number} ({ident}) is missing"
        assert by_id[ident].seed_item == number
        assert by_id[ident].reason
    # 1. R2's parts add to $1.04, not $1.03.
    parts = by_id["cloudflare-r2-parts-sum"]
    assert "$1.04" in parts.reason and "$1.03" in parts.reason
    assert parts.scenario == "Scenario B (after)" and parts.as_reported == "$1.03"
    # 2. The free tier: storage (57 - 10) x $0.015 = $0.705 -> $0.71; operations $0.
    free = by_id["cloudflare-r2-free-tier"]
    assert free.corrected == "$0.71" and "$0.705" in free.reason
    # 3. "75 GB egress free": free at any volume.
    assert "any volume" in by_id["cloudflare-r2-egress-claim"].reason
    # 4. The domain disappears from B.
    domain = by_id["domain-omitted"]
    assert (domain.as_reported, domain.corrected, domain.delta_usd) == (
        "not listed",
        "$1.00",
        D("1.00"),
    )
    # 5. Remove.bg $2,001 vs 10,000 x $0.20 = $2,000.
    removebg = by_id["removebg-stated-amount"]
    assert (removebg.as_reported, removebg.corrected) == ("$2,001.00", "$2,000.00")
    assert removebg.scenario == "Scenario A (before)"
    # 6. Vercel Hobby forbids commercial use.
    vercel = by_id["vercel-hobby-commercial-use"]
    assert (vercel.as_reported, vercel.corrected) == ("$0.00", "$20.00")
    # 7. Infrastructure includes Stripe; without it $86.84 (0.14%) on the seed's figures.
    infra = [d for d in found if d.id == "infrastructure-includes-payment-fees"]
    infra_b = next(d for d in infra if d.scenario == "Scenario B (after)")
    assert "4.04%" in infra_b.as_reported and "$86.84 = 0.14%" in infra_b.corrected
    # 8. Net revenue subtracts Stripe twice: 60,000 - 2,426.84 = $57,573.16 (96.0%).
    net = [d for d in found if d.id == "net-revenue-double-counts-payment-fees"]
    net_b = next(d for d in net if d.scenario == "Scenario B (after)")
    assert "$55,233.16" in net_b.as_reported and "$57,573.16, 95.96%" in net_b.corrected
    assert "not a margin" in net_b.reason
    # 9. 45.62% on a base with Stripe; 95.9% on the other costs.
    base = by_id["savings-percent-base"]
    assert "45.62%" in base.as_reported and "95.91% ($2,035.97 / $2,122.81)" in base.corrected


def test_differences_are_listed_in_every_report(
    book: Pricebook, scenario_a: Profile, scenario_b: Profile
) -> None:
    for policy in (AS_REPORTED, CORRECTED):
        report = build_report(book, [scenario_a, scenario_b], policy=policy)
        assert {d.id for d in report.differences} >= set(SEED_DISCREPANCIES.values())


def test_a_profile_without_seed_section_has_no_seed_quirks(
    book: Pricebook, scenario_b: Profile
) -> None:
    plain = scenario_b.without_seed()
    ids = {d.id for d in differences(book, [plain])}
    # Method differences stay (free tier, float rounding, plan terms, payment fees) ...
    assert {"cloudflare-r2-free-tier", "vercel-hobby-commercial-use"} <= ids
    # ... the seed's presentation does not.
    assert not ids & {"domain-omitted", "cloudflare-r2-egress-claim", "removebg-stated-amount"}
    # The seed's method on every line: its $2,426.84 plus the $1.00 domain (Vercel stays $0).
    assert compute(book, plain, AS_REPORTED).total == D("2427.84")


def test_default_profiles_are_a_then_b() -> None:
    assert [p.name for p in default_profiles()] == ["scenario_a", "scenario_b"]


def test_get_policy() -> None:
    assert get_policy("as-reported") is AS_REPORTED and get_policy("corrected") is CORRECTED
    with pytest.raises(ValueError, match="policy must be one of"):
        get_policy("optimistic")


# --- the model beyond the seed -----------------------------------------------------------------


def _shop(**fields: object) -> Profile:
    base = Profile(
        name="shop",
        users=100,
        plans={"railway": "pro", "removebg": "subscription", "supabase": "pro", "upstash": "free"},
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def test_r2_rounds_up_to_billing_units_above_the_free_tier(book: Pricebook) -> None:
    profile = _shop(
        storage=Storage(
            provider="cloudflare-r2",
            stored_gb=D("10.2"),
            class_a_operations=D(1_000_001),
            class_b_operations=D(5),
        )
    )
    corrected = compute(book, profile, CORRECTED).line("cloudflare-r2")
    assert corrected is not None
    # 0.2 GB above the free tier billed as 1 GB-month; 1 operation above it as 1 million.
    assert corrected.amount == D("4.52")  # 0.015 + 4.50, rounded half-up
    assert any(a.id == "cloudflare-r2-billing-units" for a in corrected.adjustments)
    reported = compute(book, profile, AS_REPORTED).line("cloudflare-r2")
    assert reported is not None
    assert reported.exact_amount == D("10.2") * D("0.015") + D(1_000_001) * D("4.5") / 10**6 + (
        D(5) * D("0.36") / 10**6
    )


def test_card_mix_adds_surcharges(book: Pricebook) -> None:
    profile = _shop(
        sales=Sales(
            orders_per_month=D(100),
            average_order_value_usd=D(40),
            card_mix=CardMix(international_share=D("0.5"), currency_conversion_share=D("0.25")),
        )
    )
    stripe = compute(book, profile, CORRECTED).line("stripe")
    assert stripe is not None
    # 40 x (2.9 + 1.5 x 0.5 + 1 x 0.25)% + 0.30 = 40 x 3.9% + 0.30 = 1.86 per order
    assert stripe.unit_price == D("1.86") and stripe.amount == D("186.00")


def test_measured_compute_minutes_and_the_plan_minimum(book: Pricebook) -> None:
    service = Service(key="worker", name="Worker", ram_gb_minutes=D(43_200), vcpu_minutes=D(10_800))
    profile = _shop(compute=Compute(provider="railway", services=(service,)))
    costs = compute(book, profile, CORRECTED)
    worker = costs.line("railway-worker")
    assert worker is not None and worker.amount == D("15.00")  # 1 GB-month $10 + 0.25 vCPU $5
    plan = costs.line("railway-plan")  # the $20 Pro fee covers $20 of usage: $5 more to pay
    assert plan is not None and plan.amount == D("5.00")
    assert costs.total == D("20.00")


def test_supabase_overage_and_free_plan_limits(book: Pricebook) -> None:
    over = _shop(storage=Storage(provider="supabase", stored_gb=D(150), egress_gb=D(300)))
    line = compute(book, over, CORRECTED).line("supabase")
    assert line is not None
    assert line.amount == D("25") + D(50) * D("0.021") + D(50) * D("0.09")  # 30.55
    free = replace(over, plans={**over.plans, "supabase": "free"})
    free_line = compute(book, free, CORRECTED).line("supabase")
    assert free_line is not None and free_line.amount == 0
    assert any("does not allow" in note for note in free_line.notes)


def test_upstash_free_plan_refuses_commands_beyond_it(book: Pricebook) -> None:
    profile = _shop(redis=Redis(provider="upstash", commands=D(600_000)))
    line = compute(book, profile, CORRECTED).line("upstash")
    assert line is not None and line.amount == 0
    assert any("refused" in note for note in line.notes)


def test_preview_images_cost_a_quarter_credit(book: Pricebook) -> None:
    profile = _shop(removal=Removal(removebg=Images(full=D(100), preview=D(40))))
    line = compute(book, profile, CORRECTED).line("removebg")
    assert line is not None and line.amount == D("22.00")  # (100 + 40 x 0.25) x $0.20


def test_unknown_or_missing_plans_are_profile_errors(book: Pricebook) -> None:
    profile = _shop(removal=Removal(removebg=Images(full=D(1))), plans={}, file="mine.toml")
    with pytest.raises(ProfileError, match=r"mine\.toml: plans\.removebg: is missing"):
        compute(book, profile, CORRECTED)
    odd = replace(profile, plans={"removebg": "enterprise"})
    with pytest.raises(ProfileError, match=r"no Remove\.bg plan 'enterprise'"):
        compute(book, odd, CORRECTED)


def test_the_model_is_pure(book: Pricebook, scenario_b: Profile) -> None:
    first = compute(book, scenario_b, CORRECTED)
    again = compute(book, scenario_b, CORRECTED)
    assert first == again
    assert compute(book, scenario_b, AS_REPORTED).total == D("2426.84")
    assert compute(book, scenario_b, CORRECTED).total == D("2447.52")
