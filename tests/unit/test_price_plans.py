"""Golden cases for every price model, proration, tax and rounding; figures worked by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from pydantic import TypeAdapter, ValidationError

from api.period_scheduler import period_due
from billing.catalog import OneTimeCharge
from billing.money import TaxRate, round_money
from billing.periods import Period
from billing.price_plans import TOP_UP, PricePlan, plan_in_force
from meterline.exceptions import InvalidCatalog, InvalidQuery

FROM = "2026-01-01T00:00:00Z"
PLAN = TypeAdapter(PricePlan)


def plan(**fields: object) -> PricePlan:
    return PLAN.validate_python({"meter": "net_tx_gb", "effective_from": FROM, **fields})


def amounts(chosen: PricePlan, quantity: str | Fraction) -> list[tuple[str, Fraction, Decimal]]:
    return [(c.description, c.quantity, c.amount) for c in chosen.charges(Fraction(quantity), "EUR")]


TIERS = [{"up_to": "100", "unit_price": "0.10"}, {"up_to": "1000", "unit_price": "0.08"}, {"unit_price": "0.05"}]


def test_per_unit_prices_every_unit_alike():
    """250 GB x 0.012 = 3.000"""
    assert amounts(plan(model="per_unit", unit_price="0.012"), "250") == [("", Decimal(250), Decimal("3.000"))]


def test_graduated_prices_each_unit_at_its_own_tier():
    """100 x 0.10 + 900 x 0.08 + 500 x 0.05 = 10 + 72 + 25 = 107"""
    charges = amounts(plan(model="graduated", tiers=TIERS), "1500")
    assert [c[1] for c in charges] == [100, 900, 500]
    assert sum(c[2] for c in charges) == Decimal("107.00")


def test_volume_prices_every_unit_at_the_tier_the_total_reaches():
    """1500 x 0.05 = 75; exactly 1000 stays in the second tier: 1000 x 0.08 = 80"""
    assert amounts(plan(model="volume", tiers=TIERS), "1500")[0][2] == Decimal("75.00")
    assert amounts(plan(model="volume", tiers=TIERS), "1000")[0][2] == Decimal("80.00")


def test_package_bills_a_started_block_as_a_whole_block():
    """25 units in blocks of 10 -> 3 blocks x 1.50 = 4.50"""
    assert amounts(plan(model="package", package_size="10", package_price="1.50"), "25")[0][1:] == (3, Decimal("4.50"))


def test_free_allowance_is_used_before_any_price():
    """80 used, 50 free: 30 x 0.045 = 1.35; 40 used stays free"""
    backup = plan(model="per_unit", unit_price="0.045", free_quantity="50")
    assert amounts(backup, "80") == [("included allowance", 50, 0), ("", 30, Decimal("1.350"))]
    assert sum(c[2] for c in amounts(backup, "40")) == 0


def test_minimum_commitment_tops_up_a_short_period_only():
    """Committed 50: 1000 x 0.012 = 12 -> top-up 38; 5000 x 0.012 = 60 -> no top-up"""
    committed = plan(model="per_unit", unit_price="0.012", minimum_amount="50")
    assert amounts(committed, "1000")[-1] == ("minimum commitment top-up", 1, Decimal("38.000"))
    assert len(amounts(committed, "5000")) == 1


def test_a_commitment_tops_up_the_lines_as_billed_so_the_customer_pays_exactly_the_commitment():
    """Committed 20.00 at 1.00 per unit: 1.125 units bill 1.125 -> 1.13 (half up); the top-up is
    20.00 - 1.13 = 18.87, not 20.00 - 1.125 = 18.875 -> 18.88, so the two lines total 20.00."""
    committed = plan(model="per_unit", unit_price="1.00", minimum_amount="20.00")
    charges = amounts(committed, "1.125")
    assert charges == [("", Fraction("1.125"), Decimal("1.13")), ("minimum commitment top-up", 1, Decimal("18.87"))]
    assert sum(charge[2] for charge in charges) == Decimal("20.00")


def test_a_commitment_is_owed_for_the_share_of_the_period_its_plan_was_in_force():
    """Committed 50.00 at 0.012, in force 20 days of 30: 50.00 x 20/30 = 33.333... owed.
    1000 x 0.012 = 12.00 -> top-up 33.333... - 12.00 = 21.333... -> 21.33; 3000 x 0.012 = 36.00
    -> no top-up; nothing billed at all -> 33.33. In yen, 5000 x 20/30 = 3333.333... -> 3333."""
    committed = plan(model="per_unit", unit_price="0.012", minimum_amount="50.00")
    twenty_of_thirty = Fraction(20, 30)
    below = committed.charges(Fraction(1000), "EUR", twenty_of_thirty)
    assert [(c.description, c.amount) for c in below] == [("", Decimal("12.00")), (TOP_UP, Decimal("21.33"))]
    assert len(committed.charges(Fraction(3000), "EUR", twenty_of_thirty)) == 1
    assert [c.amount for c in committed.top_up(Decimal(0), "EUR", twenty_of_thirty)] == [Decimal("33.33")]
    in_yen = plan(model="per_unit", unit_price="1.5", minimum_amount="5000")
    assert [c.amount for c in in_yen.top_up(Decimal(0), "JPY", twenty_of_thirty)] == [Decimal(3333)]
    assert committed.top_up(Decimal(0), "EUR", Fraction(0)) == [], "no day in force: nothing owed"


FIVE_MINUTES_OF_TWO_VCPU = Fraction(2 * 300, 3600)
"""What one 5-minute sample of a 2-vCPU VM contributes: 600 vCPU-seconds, 1/6 vCPU-hour."""


def test_tiers_blocks_and_allowances_apply_to_the_exact_total():
    """600 samples of 1/6 vCPU-h are exactly 100 vCPU-h (each rounded to 12 places they were
    100.0000000002, since 1/6 -> 0.166666666667):
    - packages of 10: 10 blocks x 1.00 = 10.00, not 11;
    - volume tiers up to 100 at 0.10, above at 0.05: 100 stays in the first tier, 10.00;
    - graduated, same tiers: 100 x 0.10 = 10.00 and no 0.00 line for the second tier;
    - 100 free: nothing to pay and no priced line."""
    total = sum([FIVE_MINUTES_OF_TWO_VCPU] * 600, Fraction(0))
    assert total == 100
    tiers = [{"up_to": "100", "unit_price": "0.10"}, {"unit_price": "0.05"}]
    assert amounts(plan(model="package", package_size="10", package_price="1.00"), total)[0][1:] == (
        10,
        Decimal("10.00"),
    )
    assert amounts(plan(model="volume", tiers=tiers), total) == [("0 to 100", 100, Decimal("10.00"))]
    assert amounts(plan(model="graduated", tiers=tiers), total) == [("0 to 100", 100, Decimal("10.00"))]
    assert amounts(plan(model="per_unit", unit_price="1", free_quantity="100"), total) == [
        ("included allowance", 100, 0)
    ]


@pytest.mark.parametrize(
    "tiers",
    [
        [{"up_to": "100", "unit_price": "1"}],
        [{"up_to": "100", "unit_price": "1"}, {"up_to": "50", "unit_price": "1"}, {"unit_price": "1"}],
        [{"unit_price": "1"}, {"unit_price": "1"}],
    ],
)
def test_tiers_must_ascend_to_one_unbounded_tier(tiers):
    with pytest.raises(ValidationError):
        plan(model="graduated", tiers=tiers)


def test_a_price_time_without_utc_is_refused():
    with pytest.raises(ValidationError, match="UTC"):
        plan(model="per_unit", unit_price="1", effective_from="2026-01-01T00:00:00")


def test_the_plan_in_force_is_the_latest_started_and_an_exact_dimension_wins():
    old = plan(model="per_unit", unit_price="1")
    new = plan(model="per_unit", unit_price="2", effective_from="2026-06-01T00:00:00Z")
    ssd = plan(model="per_unit", unit_price="3", dimension="ssd")
    plans = [old, new, ssd]
    assert plan_in_force(plans, "net_tx_gb", "", datetime(2026, 5, 31, tzinfo=UTC)) is old
    assert plan_in_force(plans, "net_tx_gb", "", datetime(2026, 6, 1, tzinfo=UTC)) is new
    assert plan_in_force(plans, "net_tx_gb", "ssd", datetime(2026, 7, 1, tzinfo=UTC)) is ssd
    assert plan_in_force(plans, "net_tx_gb", "", datetime(2025, 12, 31, tzinfo=UTC)) is None


def test_rounding_follows_the_currency_minor_unit_half_away_from_zero():
    """Exact fractions round from their exact value: 1/200 EUR is half a cent, up to 0.01;
    -1/200 (a credit) to -0.01; 1/3 EUR to 0.33; 2.5 JPY to 3 yen."""
    assert round_money(Fraction(1, 200), "EUR") == Decimal("0.01")
    assert round_money(Fraction(-1, 200), "EUR") == Decimal("-0.01")
    assert round_money(Fraction(1, 3), "EUR") == Decimal("0.33")
    assert round_money(Fraction(5, 2), "JPY") == Decimal("3")
    assert round_money(Decimal("2.345"), "EUR") == Decimal("2.35")
    assert round_money(Decimal("1234.5"), "JPY") == Decimal("1235")
    assert round_money(Decimal("1.0005"), "KWD") == Decimal("1.001")
    with pytest.raises(InvalidCatalog):
        round_money(Decimal(1), "euro")


def test_exclusive_tax_is_added_and_inclusive_tax_is_carved_out():
    """FR 20 % on 100.00 -> 20.00; CH 8.1 % inside 108.10 -> net 100.00, tax 8.10"""
    assert TaxRate(jurisdiction="FR", rate_percent=Decimal(20)).split(Decimal("100.00"), "EUR") == (
        Decimal("100.00"),
        Decimal("20.00"),
    )
    inclusive = TaxRate(jurisdiction="CH", rate_percent=Decimal("8.1"), inclusive=True)
    assert inclusive.split(Decimal("108.10"), "EUR") == (Decimal("100.00"), Decimal("8.10"))


def test_proration_counts_days_from_start_to_the_day_before_end():
    """November has 30 days: started the 10th -> 21 days; 30.00 x 21/30 = 21.00"""
    november = Period.parse("2026-11")
    assert november.days_active(date(2026, 11, 10), None) == 21
    assert november.prorate(Decimal("30.00"), date(2026, 11, 10), None) == Decimal("21.00")
    assert november.days_active(date(2026, 1, 1), date(2026, 11, 16)) == 15
    assert november.days_active(date(2026, 1, 1), date(2026, 11, 1)) == 0
    assert Period.parse("2024-02").days == 29


@pytest.mark.parametrize("name", ["2026-13", "2026-1", "26-11", "november", "0000-01", "1969-12", "2299-01", "9999-12"])
def test_a_malformed_period_is_refused(name):
    with pytest.raises(InvalidQuery):
        Period.parse(name)


def test_a_month_closes_on_its_own_only_after_the_grace_period():
    grace = timedelta(hours=48)
    assert period_due(datetime(2026, 12, 2, 23, 59, tzinfo=UTC), grace) is None
    assert period_due(datetime(2026, 12, 3, 0, 0, tzinfo=UTC), grace) == Period.parse("2026-11")
    assert period_due(datetime(2027, 1, 15, tzinfo=UTC), grace) == Period.parse("2026-12")


@pytest.mark.parametrize(
    ("figure", "value"),
    [
        ("unit_price", "1e400"),  # once in the catalog, it stopped the rating of every event
        ("unit_price", "1000000.000000000001"),
        ("unit_price", "0.0000000000001"),  # 13 decimals: storage keeps 12
        ("free_quantity", "1e19"),
        ("minimum_amount", "1000000000000.01"),
    ],
)
def test_a_figure_beyond_what_rating_and_storage_hold_is_refused(figure, value):
    with pytest.raises(ValidationError, match=figure):
        plan(model="per_unit", **{"unit_price": "0.01", figure: value})


def test_a_one_time_charge_beyond_a_trillion_is_refused():
    """1e400 was accepted and then failed every close with a server error."""
    charge = {"id": "otc-1", "customer_id": "direct", "description": "x", "day": "2026-12-05"}
    assert OneTimeCharge.model_validate({**charge, "amount": "1000000000000"}).amount == Decimal(10) ** 12
    for amount in ("1e400", "1000000000000.01"):
        with pytest.raises(ValidationError, match="amount"):
            OneTimeCharge.model_validate({**charge, "amount": amount})
