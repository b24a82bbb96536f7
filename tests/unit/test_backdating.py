"""How far back a catalog change reaches (``billing.backdating``)."""

from __future__ import annotations

from datetime import UTC, datetime

from billing.backdating import earliest_effect
from billing.catalog_entries import EntryKind

PLAN_2020 = {
    "meter": "vcpu_hours",
    "model": "per_unit",
    "unit_price": "0.025",
    "effective_from": "2020-01-01T00:00:00Z",
}
PLAN_NOV = {**PLAN_2020, "unit_price": "0.03", "effective_from": "2026-11-10T12:00:00Z"}
LIST = {"seller_id": "acme", "plans": [PLAN_2020], "fees": []}


def test_a_new_plan_version_reaches_back_to_its_own_date_only():
    after = {**LIST, "plans": [PLAN_2020, PLAN_NOV]}
    assert earliest_effect(EntryKind.PRICE_LIST, LIST, after) == datetime(2026, 11, 10, 12, tzinfo=UTC)


def test_editing_a_plan_in_place_reaches_back_to_its_date():
    edited = {**LIST, "plans": [{**PLAN_2020, "unit_price": "9.99"}]}
    assert earliest_effect(EntryKind.PRICE_LIST, LIST, edited) == datetime(2020, 1, 1, tzinfo=UTC)


def test_a_customers_own_plans_count_and_its_name_does_not():
    customer = {"id": "c", "name": "C", "plans": []}
    assert earliest_effect(EntryKind.CUSTOMER, customer, {**customer, "name": "Renamed"}) is None
    assert earliest_effect(EntryKind.CUSTOMER, customer, {**customer, "plans": [PLAN_NOV]}) == datetime(
        2026, 11, 10, 12, tzinfo=UTC
    )


def test_a_subscription_reaches_back_to_its_start_unless_only_its_end_moves():
    running = {"id": "s", "customer_id": "c", "product_id": "p", "quantity": 1, "start": "2026-01-01", "end": None}
    ended = {**running, "end": "2026-11-15"}
    assert earliest_effect(EntryKind.SUBSCRIPTION, running, ended) == datetime(2026, 11, 15, tzinfo=UTC)
    assert earliest_effect(EntryKind.SUBSCRIPTION, ended, {**ended, "end": "2026-12-20"}) == datetime(
        2026, 11, 15, tzinfo=UTC
    )
    assert earliest_effect(EntryKind.SUBSCRIPTION, running, {**running, "quantity": 3}) == datetime(
        2026, 1, 1, tzinfo=UTC
    )
    assert earliest_effect(EntryKind.SUBSCRIPTION, None, running) == datetime(2026, 1, 1, tzinfo=UTC)
    assert earliest_effect(EntryKind.SUBSCRIPTION, running, None) == datetime(2026, 1, 1, tzinfo=UTC)


def test_a_one_time_charge_reaches_its_day_and_undated_entries_reach_nothing():
    charge = {"id": "o", "customer_id": "c", "description": "Set-up", "amount": "10", "day": "2026-10-31"}
    moved = {**charge, "day": "2026-12-02"}
    assert earliest_effect(EntryKind.ONE_TIME_CHARGE, charge, moved) == datetime(2026, 10, 31, tzinfo=UTC)
    assert earliest_effect(EntryKind.PRODUCT, {"id": "p", "name": "P"}, {"id": "p", "name": "Q"}) is None
