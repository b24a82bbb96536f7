"""Card payments end to end: the API, storage and the Stripe adapter against stripe-mock (the
Stripe API's official mock), the gateway's webhooks signed as Stripe signs them.

stripe-mock answers every call and keeps nothing: what a payment became is told by the signed
webhooks these tests send, as Stripe would, including twice, out of order, or forged.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from functools import partial
from typing import Any

import httpx
import pytest

from meterline.brokers import ApacheKafkaBroker, Broker
from schemas.events import encode_batch
from tests.factories import catalog_document, stripe_event, stripe_webhook, vm_sample
from tests.integration.gateways import WEBHOOK_SECRET, FaultyGateway, gateway_settings
from tests.integration.harness import System, system_with_catalog, wait_for
from tests.integration.test_invoicing import OCTOBER
from tests.integration.test_portal import HOUR_OF_ONE_VCPU, key_for

pytestmark = pytest.mark.integration
DIRECT, RESOLD, PARTNER = "2026-10.acme.direct", "2026-10.north.resold", "2026-10.acme.north"


@pytest.fixture(scope="module")
def north_gateway(stripe_mock: str) -> Iterator[FaultyGateway]:
    """North's gateway account, reached through a proxy that can fail or stall."""
    with FaultyGateway(stripe_mock, stall_s=3) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def paying(broker: Broker, stripe_mock: str, north_gateway: FaultyGateway, tmp_path_factory: Any) -> Iterator[System]:
    """Acme takes cards through stripe-mock, North through its faulty proxy (1 s timeout, no
    retries of its own); October is closed and issued."""
    if isinstance(broker, ApacheKafkaBroker):
        pytest.skip("payments read and write storage only; the Tansu run covers them")
    document = catalog_document()
    document["provider"]["payment"] = {"gateways": ["acme-stripe"]}
    document["partners"][0]["payment"] = {"gateways": ["north-stripe"]}
    gateways = gateway_settings("acme-stripe", stripe_mock) | gateway_settings(
        "north-stripe", north_gateway.url, timeout_s=1, network_retries=0
    )
    running = system_with_catalog(
        broker,
        tmp_path_factory.mktemp("payments"),
        document,
        METERLINE_PAYMENTS_GATEWAYS=json.dumps(gateways),
        METERLINE_PAYMENTS_CHARGE_CHECK_INTERVAL_S="0.5",
    )
    running.start_all()
    events = [
        vm_sample("vm-d", customer_id="direct", at=OCTOBER, **HOUR_OF_ONE_VCPU),
        vm_sample("vm-r", customer_id="resold", at=OCTOBER, **HOUR_OF_ONE_VCPU),
    ]
    assert running.http.post("/v1/events", content=encode_batch(events)).status_code == 202
    wait_for(lambda: _stored(running), what="the usage")
    assert running.http.post("/v1/periods/2026-10/close", timeout=60).status_code == 200
    assert running.http.post("/v1/periods/2026-10/issue", timeout=60).status_code == 200
    yield running
    running.stop_all()


def _stored(system: System) -> bool:
    window = {"from": "2026-10-01T00:00:00Z", "to": "2026-11-01T00:00:00Z"}
    return all(system.usage(customer, **window)["rows"] for customer in ("direct", "resold"))


def as_party(system: System, role: str, party_id: str) -> httpx.Client:
    return system.client(key_for(system, role, party_id)[0])


def webhook(system: System, gateway: str, event: dict[str, Any], **signing: Any) -> httpx.Response:
    body, headers = stripe_webhook(signing.pop("secret", WEBHOOK_SECRET), event, **signing)
    return httpx.post(f"{system.url}/v1/payments/webhooks/{gateway}", content=body, headers=headers, timeout=30)


def intent(payment: dict[str, Any], reference: str = "pi_direct_1", **more: Any) -> dict[str, Any]:
    minor = int(Decimal(payment["amount"]) * 100)
    return {
        "id": reference,
        "object": "payment_intent",
        "amount": minor,
        "amount_received": minor,
        "currency": payment["currency"].lower(),
        "metadata": {"meterline_payment_id": payment["payment_id"]},
        **more,
    }


def invoice(system: System, invoice_id: str) -> dict[str, Any]:
    found: dict[str, Any] = system.http.get(f"/v1/invoices/{invoice_id}").json()
    return found


def payment(system: System, payment_id: str) -> dict[str, Any]:
    found: dict[str, Any] = system.http.get(f"/v1/payments/{payment_id}").json()
    return found


def test_an_invoice_is_paid_once_through_its_page_however_often_the_gateway_says_so_then_refunded(paying: System):
    direct = as_party(paying, "customer", "direct")
    due = invoice(paying, DIRECT)
    made = direct.post(f"/v1/invoices/{DIRECT}/payment-page")
    assert made.status_code == 201, made.text
    page = made.json()
    assert page["page_url"].startswith("https://checkout.stripe.com/")
    assert (page["amount"], page["currency"], page["state"]) == (due["amount_due"], "EUR", "pending")
    assert direct.post(f"/v1/invoices/{DIRECT}/payment-page").json()["payment_id"] == page["payment_id"]

    # the documents print a link that pays this invoice without signing in
    html = paying.http.get(f"/v1/invoices/{DIRECT}/html").text
    link = re.search(r"Pay by card: (http://\S+?/portal/pay/" + re.escape(DIRECT) + r"/[0-9a-f]{32})", html)
    assert link, "the issued invoice prints its payment link"
    followed = httpx.get(link.group(1), follow_redirects=False)
    assert followed.status_code == 303 and followed.headers["location"] == page["page_url"]
    forged = link.group(1)[:-4] + "0000"
    assert httpx.get(forged).status_code == 404

    session = {"id": "cs_1", "object": "checkout.session", "payment_status": "paid", "payment_intent": "pi_direct_1",
               "client_reference_id": page["payment_id"], "amount_total": int(Decimal(page["amount"]) * 100),
               "currency": "eur", "metadata": {}}  # fmt: skip
    completed = stripe_event("evt_completed", "checkout.session.completed", session)
    first = webhook(paying, "acme-stripe", completed)
    assert first.status_code == 200 and first.json() == {
        "outcome": "applied",
        "payment_id": page["payment_id"],
        "state": "succeeded",
    }
    assert webhook(paying, "acme-stripe", completed).json()["outcome"] == "duplicate"
    succeeded = stripe_event("evt_succeeded", "payment_intent.succeeded", intent(page))
    assert webhook(paying, "acme-stripe", succeeded).json()["state"] == "succeeded"
    paid = invoice(paying, DIRECT)
    assert (paid["status"], paid["payment_reference"], paid["outstanding"]) == ("paid", "pi_direct_1", "0.00")
    assert len(payment(paying, page["payment_id"])["events"]) == 2
    assert httpx.get(link.group(1)).status_code == 409, "a paid invoice asks for nothing"
    audited = paying.http.get("/v1/audit", params={"key_id": "gateway:acme-stripe"}).json()
    assert {"evt_completed", "evt_succeeded"} <= {row["path"] for row in audited}

    # refunds: never above what was paid, the issuer's to make, and the invoice owed again once whole
    assert direct.post(f"/v1/payments/{page['payment_id']}/refunds", json={"amount": "1.00"}).status_code == 403
    above = paying.http.post(f"/v1/payments/{page['payment_id']}/refunds", json={"amount": "999999.00"})
    assert above.status_code == 400 and f"at most {page['amount']} EUR" in above.json()["detail"]
    part = paying.http.post(f"/v1/payments/{page['payment_id']}/refunds", json={"amount": "0.50"})
    assert part.status_code == 200, part.text
    assert (part.json()["state"], part.json()["refunded"]) == ("partially_refunded", "0.50")
    assert invoice(paying, DIRECT)["status"] == "paid"
    rest = Decimal(page["amount"]) - Decimal("0.50")
    whole = paying.http.post(f"/v1/payments/{page['payment_id']}/refunds", json={"amount": str(rest)})
    assert whole.status_code == 200 and whole.json()["state"] == "refunded", whole.text
    refunded = invoice(paying, DIRECT)
    assert (refunded["status"], refunded["outstanding"]) == ("refunded", due["amount_due"])
    again = paying.http.post(f"/v1/payments/{page['payment_id']}/refunds", json={"amount": "0.01"})
    assert again.status_code == 400 and "nothing to refund" in again.json()["detail"]


def test_forged_foreign_or_mismatched_webhooks_change_nothing(paying: System):
    north = as_party(paying, "partner", "north")
    page = north.post(f"/v1/invoices/{PARTNER}/payment-page").json()
    paid = stripe_event("evt_forged", "payment_intent.succeeded", intent(page, "pi_partner_1"))

    assert webhook(paying, "acme-stripe", paid, secret="whsec_someone_else").status_code == 400  # noqa: S106
    stale = webhook(paying, "acme-stripe", paid, signed_at=1_700_000_000)
    assert stale.status_code == 400 and "sign" in stale.json()["detail"]
    assert webhook(paying, "no-such-gateway", paid).status_code == 404
    in_dollars = stripe_event("evt_usd", "payment_intent.succeeded", intent(page, "pi_partner_1", currency="usd"))
    mismatch = webhook(paying, "acme-stripe", in_dollars)
    assert mismatch.status_code == 422 and "in USD, the payment in EUR" in mismatch.json()["detail"]
    short = intent(page, "pi_partner_1", amount_received=100)
    underpaid = webhook(paying, "acme-stripe", stripe_event("evt_short", "payment_intent.succeeded", short))
    assert underpaid.status_code == 422 and "1.00 EUR was paid" in underpaid.json()["detail"]
    # north's gateway account settles none of acme's payments
    assert webhook(paying, "north-stripe", paid).status_code == 422

    assert (payment(paying, page["payment_id"])["state"], invoice(paying, PARTNER)["status"]) == ("pending", "issued")
    unknown = stripe_event("evt_other", "payment_intent.succeeded", {**intent(page, "pi_x"), "metadata": {}})
    assert webhook(paying, "acme-stripe", unknown).json()["outcome"] == "ignored"

    # another tenant's payment does not exist for it
    assert as_party(paying, "customer", "direct").get(f"/v1/payments/{page['payment_id']}").status_code == 404


def test_refunds_asked_at_once_never_give_back_more_than_was_paid(paying: System):
    """Each of four refunds at once asks more than half of what was paid: one goes through."""
    page = as_party(paying, "partner", "north").post(f"/v1/invoices/{PARTNER}/payment-page").json()
    paid = stripe_event("evt_partner_paid", "payment_intent.succeeded", intent(page, "pi_partner_1"))
    assert webhook(paying, "acme-stripe", paid).json()["state"] == "succeeded"
    amount = Decimal(page["amount"])
    asked = [amount - Decimal("0.01") * n for n in range(4)]
    url = f"{paying.url}/v1/payments/{page['payment_id']}/refunds"
    headers = dict(paying.http.headers)

    def refund(each: Decimal) -> httpx.Response:
        return httpx.post(url, json={"amount": str(each)}, headers=headers, timeout=60)

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(refund, asked))
    accepted = [each for each, answer in zip(asked, answers, strict=True) if answer.status_code == 200]
    assert len(accepted) == 1, [answer.text for answer in answers]
    assert all(answer.status_code in (200, 400) for answer in answers)
    assert Decimal(payment(paying, page["payment_id"])["refunded"]) == accepted[0]


def test_credit_bought_by_card_is_granted_once_per_payment(paying: System):
    direct = as_party(paying, "customer", "direct")
    headers = {"Idempotency-Key": "buy-50"}
    page = direct.post("/v1/credit/direct/card-top-ups", json={"amount": "50.00"}, headers=headers)
    assert page.status_code == 201, page.text
    again = direct.post("/v1/credit/direct/card-top-ups", json={"amount": "50.00"}, headers=headers)
    assert again.json()["payment_id"] == page.json()["payment_id"]
    other = direct.post("/v1/credit/direct/card-top-ups", json={"amount": "70.00"}, headers=headers)
    assert other.status_code == 400 and "another top-up" in other.json()["detail"]
    assert direct.post("/v1/credit/direct/card-top-ups", json={"amount": "0.001"}).status_code == 422

    bought = page.json()
    succeeded = stripe_event("evt_topup_ok", "payment_intent.succeeded", intent(bought, "pi_topup_1"))
    session = {"id": "cs_2", "object": "checkout.session", "payment_status": "paid", "payment_intent": "pi_topup_1",
               "client_reference_id": bought["payment_id"], "amount_total": 5000, "currency": "eur",
               "metadata": {}}  # fmt: skip
    completed = stripe_event("evt_topup_done", "checkout.session.completed", session)
    for event in (completed, succeeded, completed, succeeded):
        assert webhook(paying, "acme-stripe", event).status_code == 200

    grants = [g for g in paying.http.get("/v1/credit/direct/grants").json() if g["origin"] == "top_up"]
    assert [(g["amount"], g["paid"], g["paid_amount"]) for g in grants] == [("50.00", True, "50.00")]
    balance = paying.http.get("/v1/credit/direct/balance").json()["balances"]
    assert [(b["currency"], b["balance"]) for b in balance] == [("EUR", "50.00")]

    # refunded for what its credit still holds, all of it: its grant is voided with it
    refunds = f"/v1/payments/{bought['payment_id']}/refunds"
    part = paying.http.post(refunds, json={"amount": "20.00"})
    assert part.status_code == 400 and "still holds, 50.00 EUR, all of it" in part.json()["detail"]
    assert paying.http.post(refunds, json={"amount": "50.00"}).json()["state"] == "refunded"
    balance = paying.http.get("/v1/credit/direct/balance").json()["balances"]
    assert [(b["currency"], b["balance"]) for b in balance] == [("EUR", "0.00")]


def test_a_payment_page_asked_while_the_gateway_is_down_answers_503_and_is_the_same_payment_after(
    paying: System, north_gateway: FaultyGateway
) -> None:
    resold = as_party(paying, "customer", "resold")
    ask = partial(
        resold.post, "/v1/credit/resold/card-top-ups", json={"amount": "20.00"}, headers={"Idempotency-Key": "k"}
    )
    north_gateway.mode = "fail"
    down = ask()
    assert down.status_code == 503 and down.headers["Retry-After"], down.text
    assert "Stripe failed (503)" in down.json()["detail"]
    north_gateway.mode = "stall"
    assert ask().status_code == 503, "slower than the gateway's timeout: unanswered"
    north_gateway.mode = "pass"
    up = ask()
    assert up.status_code == 201 and up.json()["page_url"].startswith("https://checkout.stripe.com/"), up.text
    assert ask().json()["payment_id"] == up.json()["payment_id"]
    sessions = {key for method, path, key in north_gateway.calls if path == "/v1/checkout/sessions"}
    assert sessions == {f"meterline:{up.json()['payment_id']}"}, "every try asks with one idempotency key"
    grants = paying.http.get("/v1/credit/resold/grants").json()
    assert not [grant for grant in grants if grant["origin"] == "top_up"], "nothing is granted before it is paid"


def test_a_saved_card_is_charged_through_an_outage_with_one_idempotency_key(
    paying: System, north_gateway: FaultyGateway
):
    north = as_party(paying, "partner", "north")
    card = {"gateway": "north-stripe", "customer_ref": "cus_resold", "method_ref": "pm_card_visa"}
    assert as_party(paying, "customer", "resold").put("/v1/customers/resold/saved-card", json=card).status_code == 403
    assert north.put("/v1/customers/direct/saved-card", json=card).status_code == 404
    assert north.put("/v1/customers/resold/saved-card", json={**card, "method_ref": "4242 4242"}).status_code == 422

    north_gateway.mode = "fail"
    north_gateway.calls.clear()
    assert north.put("/v1/customers/resold/saved-card", json=card).status_code == 204
    charge_id = f"{RESOLD}.charge1"
    wait_for(lambda: len(north_gateway.calls) >= 2, what="the charge to be tried during the outage")
    waiting = payment(paying, charge_id)
    assert waiting["state"] == "pending" and waiting["note"].startswith("unanswered: Stripe failed (503)")
    north_gateway.mode = "stall"  # answers after the client's 1 s timeout
    wait_for(lambda: "did not answer" in payment(paying, charge_id)["note"], what="a timed-out call")
    assert invoice(paying, RESOLD)["status"] == "issued", "nothing paid or failed while the gateway is away"

    north_gateway.mode = "pass"
    # stripe-mock answers a charge as needing another card: a failed attempt, which the buyer sees
    failed = wait_for(lambda: payment(paying, charge_id) if payment(paying, charge_id)["state"] == "failed" else None)
    assert failed["reference"].startswith("pi_")
    assert invoice(paying, RESOLD)["status"] == "payment_failed"
    keys = {key for method, path, key in north_gateway.calls if path == "/v1/payment_intents"}
    assert keys == {f"meterline:{charge_id}"}, "every try of one charge carries the same idempotency key"

    # the gateway's later word that the charge went through pays the invoice, found by reference
    late = stripe_event(
        "evt_late_ok", "payment_intent.succeeded", {**intent(failed, failed["reference"]), "metadata": {}}
    )
    assert webhook(paying, "north-stripe", late).json()["state"] == "succeeded"
    paid = invoice(paying, RESOLD)
    assert (paid["status"], paid["payment_reference"]) == ("paid", failed["reference"])
    calls = len(north_gateway.calls)
    time.sleep(2)  # four runs of the automatic charges
    charges = [p for p in paying.http.get("/v1/payments", params={"holder_id": "resold"}).json() if p["invoice_id"]]
    assert [p["payment_id"] for p in charges] == [charge_id]
    assert len(north_gateway.calls) == calls, "a paid invoice is not charged again"
