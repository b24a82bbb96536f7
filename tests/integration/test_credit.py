"""Prepaid credit through the running system: usage burns it exactly once, whatever fails on the
way, a balance follows usage within seconds, and bad requests store nothing."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from meterline.brokers import Broker
from tests.factories import vm_sample, xaas_usage
from tests.integration.harness import System, wait_for
from tests.integration.test_exactly_once import FLEET, assert_api_matches, events_of, ticks
from tests.integration.test_invoicing import BIG_VM, OCTOBER, push, rated_rows
from tests.oracle import expected_amounts, to_cent

pytestmark = pytest.mark.integration

GRANTED = Decimal("40.00")
FAST_SETTLEMENT = {"METERLINE_CREDIT_SETTLE_INTERVAL_S": "0.5"}


def grant(system: System, holder: str, key: str, **body: Any) -> Any:
    return system.http.post(f"/v1/credit/{holder}/grants", json=body, headers={"Idempotency-Key": key})


def charged(system: System, holder: str) -> tuple[Fraction, Fraction]:
    """What the ledger charged the holder's usage: (burned from grants, left to bill)."""
    burned = left = Fraction(0)
    for entry in system.http.get(f"/v1/credit/{holder}/ledger").json():
        if entry["kind"] in ("burn", "adjustment"):
            burned -= Fraction(entry["amount"])
        elif entry["kind"] == "uncovered":
            left -= Fraction(entry["amount"])
    return burned, left


def test_usage_burns_credit_once_through_crashes_and_replays(broker: Broker, tmp_path):
    """Each customer holds 40.00 from November 1st. Usage is sent, the API (and its sink) is
    killed mid-stream, the worker too, and an agent re-sends everything: what the ledger charged
    each customer (burned plus left to bill) is the rated amount of its stored usage, and its
    balance is 40.00 less what was burned."""
    system = System(broker, tmp_path, overrides=FAST_SETTLEMENT)
    try:
        system.start_all()
        first, second = ticks(0, 2), ticks(2, 2)
        expected = expected_amounts(events_of(first + second))
        for customer in expected:
            made = grant(system, customer, "welcome", amount=str(GRANTED), effective_at="2026-11-01T00:00:00Z")
            assert made.status_code == 201, made.text
        for batch in first:
            system.publish(batch)
        system.kill("api")  # the sink with it, mid-stream; a settlement perhaps mid-write
        system.start_api()
        system.kill("worker")
        system.start_worker("worker-after-crash")
        for batch in second:
            system.publish(batch)
        for batch in first + second:
            system.publish(batch, system.publisher("replaying-agent"))
        assert_api_matches(system, events_of(first + second))

        def settled() -> bool:
            return all(sum(charged(system, c)) == Fraction(system.usage(c)["totals_exact"]["EUR"]) for c in expected)

        wait_for(settled, 60, "every customer's ledger to charge its stored usage")
        for customer, exact in expected.items():
            burned, left = charged(system, customer)
            assert to_cent(burned + left) == to_cent(exact), customer
            assert burned == min(Fraction(GRANTED), burned + left)
            balance = system.http.get(f"/v1/credit/{customer}/balance").json()["balances"]
            assert [(b["currency"], Decimal(b["balance"])) for b in balance] == [
                ("EUR", to_cent(Fraction(GRANTED) - burned))
            ]
    finally:
        system.stop_all()


def test_a_balance_follows_usage_within_seconds_and_the_ledger_takes_it_once_the_hour_ends(system: System):
    """Usage of the hour under way lowers the balance as soon as the usage API shows it; the
    ledger records nothing of that hour until it has ended."""
    system.start_all()
    customer = "cust-00001"
    # A sample covers the five minutes before it, perhaps of the hour before: the grant pays for both.
    hour = clear_of_the_hour_end()
    since = hour - timedelta(hours=1)
    assert grant(system, customer, "k1", amount="25.00", effective_at=f"{since:%Y-%m-%dT%H:%M:%SZ}").status_code == 201
    system.publish(FLEET.collect(datetime.now(UTC) - timedelta(seconds=5)))
    seen: dict[str, object] = {}

    def follows_usage() -> bool:
        seen["shown"] = shown = Fraction(system.usage(customer)["totals_exact"].get("EUR", "0"))
        seen["balances"] = balances = system.http.get(f"/v1/credit/{customer}/balance").json()["balances"]
        return shown > 0 and Decimal(balances[0]["balance"]) == to_cent(Fraction(25) - min(shown, Fraction(25)))

    wait_for(follows_usage, 60, "the balance to follow the usage the usage API shows", seen)
    ledger = system.http.get(f"/v1/credit/{customer}/ledger").json()
    assert not [e for e in ledger if e["reference"].startswith(f"usage/EUR/{hour:%Y-%m-%dT%H}/")]


def clear_of_the_hour_end(margin: timedelta = timedelta(minutes=3)) -> datetime:
    """The hour under way, once at least ``margin`` of it is left: usage published in it is still
    unsettled while the test looks (an hour is settled a minute after it ends)."""
    now = datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    if hour + timedelta(hours=1) - now < margin:
        time.sleep((hour + timedelta(hours=1) - now).total_seconds() + 1)
        hour += timedelta(hours=1)
    return hour


def test_bad_grants_are_refused_with_a_reason_and_store_nothing(system: System):
    system.start_api()
    customer = "cust-00002"
    refused = [
        ({"amount": "0"}, 422),
        ({"amount": "-5"}, 422),
        ({"amount": "1e400"}, 422),
        ({"amount": "NaN"}, 422),
        ({"amount": "0.001"}, 400),  # not a whole number of cents
        ({"amount": "5", "currency": "XXX"}, 400),
        ({"amount": "5", "effective_at": "2026-12-10T00:00:00Z", "expires_at": "2026-12-01T00:00:00Z"}, 400),
        ({"amount": "5", "effective_at": "2026-12-10T00:00:00"}, 422),  # no time zone
        ({"amount": "5", "effective_at": 1796428800}, 422),  # Unix seconds: not a time a caller writes
        ({"amount": "5", "expires_at": "1796428800"}, 422),
        ({"amount": "5", "scope": ["no-such-product"]}, 400),
        ({"amount": "5", "scope": ["'; DROP TABLE x"]}, 422),
        ({"amount": "5", "paid_amount": "4"}, 400),  # a free grant has nothing paid
        ({"amount": "5", "surprise": True}, 422),
        ({"amount": 1.5}, 422),  # money is a decimal string, never a float
        ({"amount": "１２"}, 422),
        ({"amount": "1_000"}, 422),
        ({"amount": "5", "paid": "yes"}, 422),
        ({"amount": "5", "effective_at": "9999-12-31T23:59:59-01:00"}, 422),
        ({"amount": "5", "effective_at": "2026-12-06T00:00:00.0001Z", "expires_at": "2026-12-06T00:00:00.0009Z"}, 400),
    ]
    for body, status in refused:
        answer = grant(system, customer, "bad", **body)
        assert answer.status_code == status, (body, answer.text)
        assert answer.json()["detail"], body
    no_key = system.http.post(f"/v1/credit/{customer}/grants", json={"amount": "5"})
    assert no_key.status_code == 422
    assert grant(system, "nobody", "k", amount="5").status_code == 404
    assert system.http.get(f"/v1/credit/{customer}/grants").json() == []
    assert system.http.get(f"/v1/credit/{customer}/ledger").json() == []
    balance = f"/v1/credit/{customer}/balance"
    assert system.http.get(balance, params={"at": "0001-01-01T00:00:00+01:00"}).status_code == 422
    assert system.http.get(balance, params={"at": "1796428800"}).status_code == 422
    to_come = system.http.get(balance, params={"at": "2299-01-01T00:00:00Z"})
    assert to_come.status_code == 400 and "to come" in to_come.json()["detail"]

    first = grant(system, customer, "same", amount="5.00")
    again = grant(system, customer, "same", amount="5.0")  # the same amount, written another way
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert grant(system, customer, "same", amount="6.00").status_code == 409
    assert [e["amount"] for e in system.http.get(f"/v1/credit/{customer}/ledger").json()] == ["5.000000000000"]


def test_top_up_plans_grant_once_per_month_and_once_per_crossing(system: System):
    """cust-00004 holds 0.01 from November and uses more: its balance is 0. A threshold plan
    (under 5.00, up to 25.00) then tops it up by exactly 25.00, once; a recurring plan grants
    7.00 this month, once, even across an API restart. Balance: 25.00 + 7.00 = 32.00."""
    customer = "cust-00004"
    system.start_all()
    assert grant(system, customer, "tiny", amount="0.01", effective_at="2026-11-01T00:00:00Z").status_code == 201
    batches = ticks(0, 2)
    assert expected_amounts(events_of(batches))[customer] > Fraction(1, 100)
    for batch in batches:
        system.publish(batch)
    assert_api_matches(system, events_of(batches))

    def balance() -> Decimal:
        return Decimal(system.http.get(f"/v1/credit/{customer}/balance").json()["balances"][0]["balance"])

    wait_for(lambda: balance() == 0, 30, "the credit to be spent")
    plans = f"/v1/credit/{customer}/top-up-plans"
    assert system.http.post(plans, json={"kind": "threshold", "floor": "5.00", "target": "25.00"}).status_code == 201
    wait_for(lambda: balance() == Decimal("25.00"), 30, "the threshold top-up")
    assert system.http.post(plans, json={"kind": "recurring", "amount": "7.00"}).status_code == 201
    wait_for(lambda: balance() == Decimal("32.00"), 30, "the recurring grant")
    system.kill("api")
    system.start_api()
    time.sleep(3)  # several passes
    assert balance() == Decimal("32.00")
    kinds = sorted((e["kind"], e["amount"]) for e in system.http.get(f"/v1/credit/{customer}/ledger").json())
    assert [k for k in kinds if k[0] in ("grant", "top_up")] == [
        ("grant", "0.010000000000"),
        ("grant", "7.000000000000"),
        ("top_up", "25.000000000000"),
    ]
    refused = [
        {"kind": "threshold", "floor": "30", "target": "20"},
        {"kind": "recurring"},
        {"kind": "recurring", "amount": "1", "floor": "2"},
        {"kind": "monthly", "amount": "1"},
        {"kind": "recurring", "amount": "0.001"},
    ]
    for body in refused:
        assert system.http.post(plans, json=body).status_code in (400, 422), body
    assert len(system.http.get(plans).json()) == 2


def test_the_close_pays_the_invoice_from_credit_respecting_scopes_and_a_credit_note_gives_it_back(billing: System):
    """Direct's October invoice totals 23.83 (test_invoicing works it out). Direct holds 10.00
    for anything and 3.00 for restores only. Credit pays what the buyer pays per product and
    meter: lines x 0.9 (10 % off) x 1.2 (VAT 20 %) = x 1.08. In charge order: the one-time 1.00
    -> 1.08 from the 10.00 (8.92 left); restores 4.50 -> 4.86: 3.00 from the restores grant (its
    scope first), 1.86 from the other (7.06); disk 0.60 -> 0.648 (6.412); net tx 14.00 -> 15.12:
    the last 6.412, 8.708 not covered. Paid from credit 13.00; amount due 23.83 - 13.00 = 10.83.
    The credit note voiding it gives the 13.00 back."""
    direct = [vm_sample(f"vm-{n}", customer_id="direct", at=OCTOBER, **BIG_VM) for n in range(3)]
    direct.append(xaas_usage(quantity="100", customer_id="direct", at=OCTOBER))
    october = "2026-10-01T00:00:00Z"
    assert grant(billing, "direct", "any", amount="10.00", effective_at=october).status_code == 201
    scoped = grant(billing, "direct", "restores", amount="3.00", effective_at=october, scope=["restore_gb"])
    assert scoped.status_code == 201, scoped.text
    push(billing, direct)
    wait_for(lambda: rated_rows(billing, "direct") == 13, what="usage")

    closed = billing.http.post("/v1/periods/2026-10/close")
    assert closed.status_code == 200, closed.text
    invoice = billing.http.get("/v1/invoices/2026-10.acme.direct").json()
    assert (invoice["total"], invoice["credit_applied"], invoice["amount_due"]) == ("23.83", "13.00", "10.83")
    balance = billing.http.get("/v1/credit/direct/balance").json()["balances"]
    assert [b["balance"] for b in balance] == ["0.00"]
    closed_again = billing.http.post("/v1/periods/2026-10/close")  # a new draft revision burns nothing more
    assert closed_again.status_code == 200
    assert billing.http.get("/v1/invoices/2026-10.acme.direct").json()["credit_applied"] == "13.00"
    assert "Paid from prepaid credit" in billing.http.get("/v1/invoices/2026-10.acme.direct/html").text

    assert billing.http.post("/v1/invoices/2026-10.acme.direct/issue").status_code == 200
    ubl = billing.http.get("/v1/invoices/2026-10.acme.direct/ubl").text
    assert "PrepaidAmount" in ubl and "10.83" in ubl
    assert billing.http.post("/v1/invoices/2026-10.acme.direct/void").status_code == 200
    note = billing.http.get("/v1/invoices/2026-10.acme.direct.credit").json()
    assert (note["total"], note["credit_applied"], note["amount_due"]) == ("-23.83", "-13.00", "-10.83")
    balance = billing.http.get("/v1/credit/direct/balance").json()["balances"]
    assert [b["balance"] for b in balance] == ["13.00"]
