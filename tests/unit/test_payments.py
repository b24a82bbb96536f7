"""Card payments as pure rules: minor units, a payment settled by its events whatever their order
and repetition, refund limits, the retry schedule, and Stripe's webhooks read and checked."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from api.payments import may_still_pay
from billing.adapters.stripe_gateway import StripeGateway, from_stripe, to_stripe
from billing.payments import (
    EventKind,
    GatewayEvent,
    Payment,
    PaymentMethod,
    PaymentPurpose,
    PaymentState,
    from_minor,
    next_charge_at,
    to_minor,
)
from meterline.exceptions import BadSignature, GatewayRefused, InvalidQuery
from tests.factories import stripe_event, stripe_webhook

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
SECRET = "whsec_test_secret"  # noqa: S105 - signs the test webhooks only


def payment(amount_minor: int = 15654, purpose: PaymentPurpose = PaymentPurpose.INVOICE) -> Payment:
    return Payment(
        payment_id="pay-1",
        purpose=purpose,
        method=PaymentMethod.PAYMENT_PAGE,
        holder_id="direct",
        issuer_id="acme",
        invoice_id="2026-11.acme.direct" if purpose is PaymentPurpose.INVOICE else "",
        gateway="stripe",
        currency="EUR",
        amount_minor=amount_minor,
        created_at=T0,
        updated_at=T0,
    )


def event(kind: EventKind, event_id: str, amount: int = 15654, minutes: int = 0, **more: str) -> GatewayEvent:
    currency = more.pop("currency", "EUR")
    at = T0 + timedelta(minutes=minutes)
    return GatewayEvent("stripe", event_id, kind, "pay-1", "pi_1", amount, currency, at, **more)


def test_amounts_travel_in_the_currencys_minor_unit():
    assert to_minor(Decimal("156.54"), "EUR") == 15654
    assert to_minor(Decimal("1200"), "JPY") == 1200  # the yen has no minor unit
    assert to_minor(Decimal("1.234"), "KWD") == 1234  # the dinar has three places
    assert from_minor(15654, "EUR") == Decimal("156.54")
    assert from_minor(1200, "JPY") == Decimal("1200")
    with pytest.raises(InvalidQuery, match="whole number"):
        to_minor(Decimal("1.005"), "EUR")  # never rounded on the way to a gateway
    with pytest.raises(InvalidQuery, match="whole number"):
        to_minor(Decimal("0.5"), "JPY")


def test_a_payment_succeeds_once_however_often_and_in_whatever_order_its_events_come():
    success = event(EventKind.SUCCEEDED, "evt_ok")
    late_failure = event(EventKind.FAILED, "evt_failed_earlier", minutes=-5, reason="card declined")
    for events in ([success], [success, success], [late_failure, success], [success, late_failure]):
        settled = payment().settled_by(events, T0)
        assert (settled.state, settled.reference, settled.refunded_minor) == (PaymentState.SUCCEEDED, "pi_1", 0)


def test_a_failure_alone_fails_it_with_the_gateways_reason():
    settled = payment().settled_by([event(EventKind.FAILED, "evt_1", reason="Your card was declined.")], T0)
    assert settled.state is PaymentState.FAILED and settled.note == "Your card was declined."


def test_refunds_count_once_each_and_a_refund_before_its_payment_still_counts():
    refund_a = event(EventKind.REFUNDED, "evt_r1", amount=5000, refund_id="re_a")
    refund_a_again = event(EventKind.REFUNDED, "refund:re_a", amount=5000, refund_id="re_a")  # the call's answer
    refund_b = event(EventKind.REFUNDED, "evt_r2", amount=10654, refund_id="re_b")
    success = event(EventKind.SUCCEEDED, "evt_ok")

    partly = payment().settled_by([refund_a, success, refund_a_again], T0)
    assert (partly.state, partly.refunded_minor, partly.refundable_minor) == (
        PaymentState.PARTIALLY_REFUNDED,
        5000,
        10654,
    )
    whole = payment().settled_by([refund_b, refund_a, success], T0)
    assert (whole.state, whole.refunded_minor, whole.refundable_minor) == (PaymentState.REFUNDED, 15654, 0)


def test_an_event_in_another_currency_or_for_another_amount_settles_nothing():
    wrong_currency = event(EventKind.SUCCEEDED, "evt_1", currency="USD")
    too_little = event(EventKind.SUCCEEDED, "evt_2", amount=15600)
    assert payment().settled_by([wrong_currency, too_little], T0).state is PaymentState.PENDING


def test_a_refund_is_at_most_what_was_paid_less_what_was_refunded():
    paid = payment().settled_by([event(EventKind.SUCCEEDED, "evt_ok")], T0)
    with pytest.raises(InvalidQuery, match=r"at most 156.54 EUR"):
        paid.check_refund(15655)
    paid.check_refund(15654)
    partly = paid.settled_by(
        [event(EventKind.SUCCEEDED, "evt_ok"), event(EventKind.REFUNDED, "r", 6000, refund_id="re")], T0
    )
    with pytest.raises(InvalidQuery, match=r"at most 96.54 EUR can be refunded \(paid 156.54, refunded 60.00\)"):
        partly.check_refund(9655)
    with pytest.raises(InvalidQuery, match="nothing to refund"):
        payment().check_refund(1)  # never paid
    with pytest.raises(InvalidQuery, match="above zero"):
        paid.check_refund(0)


def test_a_top_up_gives_back_what_its_credit_still_holds_all_of_it():
    """50.00 bought, 12.50 of it spent: 37.50 is given back (and the grant voided), nothing else."""
    top_up = payment(5000, PaymentPurpose.TOP_UP).settled_by([event(EventKind.SUCCEEDED, "e", 5000)], T0)
    top_up.check_refund(3750, grant_holds_minor=3750)
    for asked in (5000, 2000):
        with pytest.raises(InvalidQuery, match="what its credit still holds, 37.50 EUR, all of it"):
            top_up.check_refund(asked, grant_holds_minor=3750)
    with pytest.raises(InvalidQuery, match="used up"):
        top_up.check_refund(5000, grant_holds_minor=0)


def test_two_gateway_payments_of_one_payment_count_once_and_ask_for_a_refund():
    first = event(EventKind.SUCCEEDED, "evt_1")
    second = GatewayEvent("stripe", "evt_2", EventKind.SUCCEEDED, "pay-1", "pi_2", 15654, "EUR", T0)
    settled = payment().settled_by([first, second], T0)
    assert settled.state is PaymentState.SUCCEEDED and settled.refundable_minor == 15654
    assert settled.note == "to refund: paid 2 times (pi_1, pi_2); one is counted"


def test_a_card_payment_is_above_zero_and_at_most_what_a_gateway_takes():
    """Stripe takes at most 99,999,999 minor units: 999,999.99 EUR."""
    assert payment(99_999_999).amount_minor == 99_999_999
    for amount in (100_000_000, 0, -1):
        with pytest.raises(InvalidQuery, match="at most 999999.99"):
            payment(amount)


def test_a_failed_automatic_charge_is_tried_again_after_1_h_6_h_1_day_and_3_days_then_no_more():
    first = T0
    assert next_charge_at([first]) == T0 + timedelta(hours=1)
    second = T0 + timedelta(hours=1)
    assert next_charge_at([first, second]) == second + timedelta(hours=6)
    tries = [T0 + timedelta(days=n) for n in range(4)]
    assert next_charge_at(tries) == tries[-1] + timedelta(days=3)
    assert next_charge_at([*tries, T0 + timedelta(days=7)]) is None


def gateway() -> StripeGateway:
    return StripeGateway("stripe", "sk_test_unused", SECRET)


def intent(amount: int = 15654, currency: str = "eur") -> dict[str, object]:
    return {"id": "pi_1", "object": "payment_intent", "amount": amount, "amount_received": amount,
            "currency": currency, "metadata": {"meterline_payment_id": "pay-1"}}  # fmt: skip


def test_a_signed_stripe_webhook_becomes_its_payment_event():
    body, headers = stripe_webhook(SECRET, stripe_event("evt_1", "payment_intent.succeeded", intent()))
    read = gateway().read_webhook(body, {name.lower(): value for name, value in headers.items()})
    assert read is not None
    assert (read.event_id, read.kind, read.payment_id, read.reference) == (
        "evt_1",
        EventKind.SUCCEEDED,
        "pay-1",
        "pi_1",
    )
    assert (read.amount_minor, read.currency) == (15654, "EUR")


def test_a_checkout_page_names_its_payment_by_its_client_reference():
    session = {"id": "cs_1", "object": "checkout.session", "payment_status": "paid", "client_reference_id": "pay-9",
               "payment_intent": "pi_9", "amount_total": 5000, "currency": "eur", "metadata": {}}  # fmt: skip
    body, headers = stripe_webhook(SECRET, stripe_event("evt_2", "checkout.session.completed", session))
    read = gateway().read_webhook(body, {k.lower(): v for k, v in headers.items()})
    assert read is not None and (read.payment_id, read.reference, read.amount_minor) == ("pay-9", "pi_9", 5000)
    unpaid = {**session, "payment_status": "unpaid"}
    body, headers = stripe_webhook(SECRET, stripe_event("evt_3", "checkout.session.completed", unpaid))
    assert gateway().read_webhook(body, {k.lower(): v for k, v in headers.items()}) is None


def test_a_webhook_not_signed_with_the_secret_or_signed_long_ago_is_refused():
    signed = stripe_event("evt_1", "payment_intent.succeeded", intent())
    for body, headers in (
        stripe_webhook("whsec_someone_else", signed),
        stripe_webhook(SECRET, signed, signed_at=int(datetime.now(UTC).timestamp()) - 3600),
    ):
        with pytest.raises(BadSignature):
            gateway().read_webhook(body, {k.lower(): v for k, v in headers.items()})
    body, headers = stripe_webhook(SECRET, signed)
    with pytest.raises(BadSignature):
        gateway().read_webhook(body.replace(b"15654", b"99999"), {k.lower(): v for k, v in headers.items()})
    with pytest.raises(BadSignature):
        gateway().read_webhook(body, {})


def test_a_webhook_signed_ahead_of_now_is_refused():
    signed = stripe_event("evt_1", "payment_intent.succeeded", intent())
    body, headers = stripe_webhook(SECRET, signed, signed_at=int(datetime.now(UTC).timestamp()) + 3600)
    with pytest.raises(BadSignature, match="ahead"):
        gateway().read_webhook(body, {k.lower(): v for k, v in headers.items()})


def test_events_that_settle_nothing_are_read_as_none():
    body, headers = stripe_webhook(SECRET, stripe_event("evt_1", "customer.created", {"id": "cus_1"}))
    assert gateway().read_webhook(body, {k.lower(): v for k, v in headers.items()}) is None


def test_an_invoice_is_not_charged_while_a_charge_is_unknown_or_its_page_may_be_paid():
    """A page the gateway never made (it was down) does not hold the charge back, nor one older than 23 h."""
    page = replace(payment(), page_url="https://checkout.example/p")
    assert may_still_pay(page, T0 + timedelta(hours=22))
    assert not may_still_pay(page, T0 + timedelta(hours=23))
    assert not may_still_pay(replace(page, page_url=""), T0)
    assert not may_still_pay(replace(page, state=PaymentState.FAILED), T0)
    assert may_still_pay(replace(payment(), method=PaymentMethod.SAVED_CARD), T0 + timedelta(days=30))


def test_amounts_go_to_stripe_as_stripe_counts_them_or_not_at_all():
    """Meterline counts ISO 4217's minor units; Stripe its own. 51.25 EUR is 5125 to both; 500 JPY
    500; 5.120 KWD is 5120 fils, a multiple of ten as Stripe asks, 5.125 KWD is not; 100 MGA is
    10000 ISO hundredths but 100 to Stripe (zero-decimal there), and 10.50 MGA cannot be paid;
    1000 ISK is 1000 to ISO and 100000 to Stripe (hundredths, whole krónur only)."""
    for amount_minor, currency, counted in ((5125, "EUR", 5125), (500, "JPY", 500), (5120, "KWD", 5120),
                                            (10000, "MGA", 100), (1000, "ISK", 100000)):  # fmt: skip
        assert to_stripe(amount_minor, currency) == counted
        assert from_stripe(counted, currency) == amount_minor
    for amount_minor, currency, reason in ((5125, "KWD", "multiples of 0.010: 5.125 KWD"),
                                           (1050, "MGA", "whole units: 10.50 MGA")):  # fmt: skip
        with pytest.raises(GatewayRefused, match=reason):
            to_stripe(amount_minor, currency)
