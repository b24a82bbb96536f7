"""Credit alert rules and enforcement, with figures worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from api.credit_watch import applies
from billing.alerts import AlertRule, Condition, Standing, TargetKind, crossing, suspended
from billing.catalog import Customer
from meterline.exceptions import InvalidQuery

NOW = datetime(2026, 11, 10, 12, tzinfo=UTC)


def standing(balance: str, **figures: object) -> Standing:
    values: dict[str, object] = {
        "customer_id": "cust-1",
        "currency": "EUR",
        "at": NOW,
        "balance": Decimal(balance),
        "granted": Decimal("200.00"),
        "month_cost": Decimal(0),
        "runs_out_at": None,
        "uncovered": Decimal(0),
        "holds_credit": True,
        "prepay": True,
        **figures,
    }
    return Standing(**values)  # type: ignore[arg-type]


def rule(condition: Condition, threshold: str) -> AlertRule:
    return AlertRule("r-1", "acme", TargetKind.CUSTOMER, "cust-1", condition, Decimal(threshold))


def test_a_rule_fires_once_per_crossing_and_rearms_when_the_balance_recovers():
    """Under 50.00: 60 (quiet), 49.99 (fires), 30 (still under: quiet), top-up to 80 (re-arms,
    quiet), 10 (fires again)."""
    under_50 = rule(Condition.BALANCE_BELOW, "50.00")
    firing, fired = False, []
    for balance in ("60", "49.99", "30", "80", "10"):
        reason, firing = crossing(under_50, standing(balance), firing)
        fired.append(reason is not None)
    assert fired == [False, True, False, False, True]


def test_a_percentage_of_what_was_granted():
    """25 % of 200.00 is 50.00: 50.00 is not under it, 49.99 is (24.995 %)."""
    quarter = rule(Condition.BALANCE_BELOW_PERCENT, "25")
    assert crossing(quarter, standing("50.00"), False)[0] is None
    reason, _ = crossing(quarter, standing("49.99"), False)
    assert reason is not None and "24.995%" in reason


def test_cost_over_and_runs_out_within():
    assert crossing(rule(Condition.COST_OVER, "100"), standing("5", month_cost=Decimal("100.01")), False)[0]
    assert not crossing(rule(Condition.COST_OVER, "100"), standing("5", month_cost=Decimal("100")), False)[0]
    soon = rule(Condition.RUNS_OUT_WITHIN_HOURS, "24")
    assert crossing(soon, standing("5", runs_out_at=NOW + timedelta(hours=24)), False)[0]
    assert not crossing(soon, standing("5", runs_out_at=NOW + timedelta(hours=25)), False)[0]
    assert not crossing(soon, standing("5", runs_out_at=None), False)[0]


def test_balance_rules_watch_only_customers_holding_credit():
    assert not crossing(rule(Condition.BALANCE_BELOW, "50"), standing("0", holds_credit=False), False)[0]


def test_a_prepay_customer_is_suspended_past_its_grace_and_a_top_up_lifts_it():
    """Balance 0, 4.99 not covered with a grace of 5.00: not yet; 5.01: suspended; any credit: lifted."""
    grace = Decimal("5.00")
    assert not suspended(standing("0", uncovered=Decimal("4.99")), grace)
    assert suspended(standing("0", uncovered=Decimal("5.01")), grace)
    assert not suspended(standing("0.01", uncovered=Decimal("5.01")), grace)
    assert not suspended(standing("0", uncovered=Decimal("9"), prepay=False), grace)


@pytest.mark.parametrize(
    ("condition", "threshold"), [(Condition.BALANCE_BELOW_PERCENT, "101"), (Condition.BALANCE_BELOW, "-1")]
)
def test_a_threshold_that_cannot_be_is_refused(condition, threshold):
    with pytest.raises(InvalidQuery):
        rule(condition, threshold)


def test_a_partners_rules_stop_watching_a_customer_that_moved_to_another_partner():
    """``applies`` is the watch's: a rule watches a customer its owner still sees."""
    rule = AlertRule("r-1", "north", TargetKind.CUSTOMER, "cust-1", Condition.COST_OVER, Decimal(1))
    by_partner = AlertRule("r-2", "north", TargetKind.PARTNER, "north", Condition.COST_OVER, Decimal(1))
    provider = AlertRule("r-3", "acme", TargetKind.CUSTOMER, "cust-1", Condition.COST_OVER, Decimal(1))
    with_north = Customer(id="cust-1", name="One", partner_id="north")
    moved = Customer(id="cust-1", name="One", partner_id="south")
    assert applies(rule, with_north, "acme") and applies(by_partner, with_north, "acme")
    assert not applies(rule, moved, "acme") and not applies(by_partner, moved, "acme")
    assert applies(provider, moved, "acme")
