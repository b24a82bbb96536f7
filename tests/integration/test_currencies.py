"""A customer billed in francs through the whole system: rated in CHF by the stream, stored and
reported in CHF, invoiced in CHF, granted and charged credit in CHF; euros are refused for it.

Figures by hand: 10 vCPU-hours x 0.03 CHF = 0.30 CHF; 20 % tax = 0.06; total 0.36 CHF.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from meterline.brokers import ApacheKafkaBroker, Broker
from schemas.events import encode_batch
from tests.factories import FROM, catalog_document, stripe_event, stripe_webhook, vm_sample
from tests.integration.gateways import WEBHOOK_SECRET, gateway_settings
from tests.integration.harness import System, system_with_catalog, wait_for
from tests.integration.test_invoicing import OCTOBER

pytestmark = pytest.mark.integration
TEN_VCPU_HOURS = {"interval_s": 3600, "vcpu": 10, "ram_mb": 0, "disks": [], "net_tx_bytes": 0}


@pytest.fixture(scope="module")
def francs(broker: Broker, stripe_mock: str, tmp_path_factory: Any) -> Iterator[System]:
    if isinstance(broker, ApacheKafkaBroker):
        pytest.skip("currencies are the catalog's and the stream's, not the broker's; the Tansu run covers them")
    document = catalog_document()
    document["provider"]["payment"] = {"gateways": ["acme-stripe"]}
    document["price_lists"].append(
        {
            "seller_id": "acme",
            "currency": "CHF",
            "plans": [{"meter": "vcpu_hours", "model": "per_unit", "unit_price": "0.03", "effective_from": FROM}],
        }
    )
    document["customers"].append({"id": "zurich", "name": "Zurich AG", "currency": "CHF"})
    running = system_with_catalog(
        broker,
        tmp_path_factory.mktemp("francs"),
        document,
        METERLINE_PAYMENTS_GATEWAYS=json.dumps(gateway_settings("acme-stripe", stripe_mock)),
    )
    yield running.start_all()
    running.stop_all()


def test_a_franc_customer_is_rated_invoiced_granted_and_charged_in_francs(francs: System):
    sample = vm_sample("vm-z", customer_id="zurich", at=OCTOBER, **TEN_VCPU_HOURS)
    pushed = francs.http.post("/v1/events", content=encode_batch([sample]))
    assert pushed.status_code == 202 and not pushed.json()["rejected"], pushed.text
    window = {"from": "2026-10-01T00:00:00Z", "to": "2026-11-01T00:00:00Z"}
    rows = wait_for(lambda: francs.usage("zurich", **window)["rows"], what="the usage")
    assert [(r["meter"], r["currency"], r["amount"]) for r in rows] == [("vcpu_hours", "CHF", "0.300000000000")]

    assert francs.http.post("/v1/periods/2026-10/close", timeout=60).status_code == 200
    assert francs.http.post("/v1/invoices/2026-10.acme.zurich/issue").status_code == 200
    invoice = francs.http.get("/v1/invoices/2026-10.acme.zurich").json()
    assert (invoice["currency"], invoice["subtotal"], invoice["tax_amount"], invoice["total"]) == (
        "CHF", "0.30", "0.06", "0.36",
    )  # fmt: skip
    assert "CHF" in francs.http.get("/v1/invoices/2026-10.acme.zurich/html").text

    in_euros = francs.http.post(
        "/v1/credit/zurich/grants", json={"amount": "5.00", "currency": "EUR"}, headers={"Idempotency-Key": "eur"}
    )
    assert in_euros.status_code == 400 and "billed in CHF" in in_euros.json()["detail"]
    granted = francs.http.post("/v1/credit/zurich/grants", json={"amount": "5.00"}, headers={"Idempotency-Key": "g"})
    assert granted.status_code == 201 and granted.json()["currency"] == "CHF"
    balances = francs.http.get("/v1/credit/zurich/balance").json()["balances"]
    assert [b["currency"] for b in balances] == ["CHF"]

    page = francs.http.post(f"/v1/invoices/{invoice['invoice_id']}/payment-page").json()
    assert (page["currency"], page["amount"]) == ("CHF", "0.36")
    paid = {"id": "pi_chf", "amount": 36, "amount_received": 36, "currency": "eur",
            "metadata": {"meterline_payment_id": page["payment_id"]}}  # fmt: skip
    body, headers = stripe_webhook(WEBHOOK_SECRET, stripe_event("evt_eur", "payment_intent.succeeded", paid))
    answer = francs.client(None).post("/v1/payments/webhooks/acme-stripe", content=body, headers=headers)
    assert answer.status_code == 422 and "in EUR, the payment in CHF" in answer.json()["detail"]
    body, headers = stripe_webhook(
        WEBHOOK_SECRET, stripe_event("evt_chf", "payment_intent.succeeded", {**paid, "currency": "chf"})
    )
    assert francs.client(None).post("/v1/payments/webhooks/acme-stripe", content=body, headers=headers).is_success
    assert francs.http.get("/v1/invoices/2026-10.acme.zurich").json()["status"] == "paid"


def test_a_partys_currency_never_changes_and_one_made_again_takes_its_records(francs: System):
    """Records are never converted, and usage, grants and payments in flight carry a party's
    currency whatever the stored records say: a party's currency never changes. A mistyped one
    is mended by deleting the party before it holds anything; made again under its id, a party
    takes the currency of what it holds."""
    geneva = {"id": "geneva", "name": "Geneva SA", "currency": "CHF"}
    assert francs.http.put("/v1/catalog/customers/geneva", json=geneva, timeout=30).status_code == 200
    in_yen = francs.http.put("/v1/catalog/customers/geneva", json={**geneva, "currency": "JPY"}, timeout=30)
    assert in_yen.status_code == 409 and "geneva is billed in CHF" in in_yen.json()["detail"]
    assert francs.http.delete("/v1/catalog/customers/geneva", timeout=30).status_code == 200
    mended = francs.http.put("/v1/catalog/customers/geneva", json={**geneva, "currency": "JPY"}, timeout=30)
    assert mended.status_code == 200, mended.text  # nothing held yet
    granted = francs.http.post("/v1/credit/geneva/grants", json={"amount": "500"}, headers={"Idempotency-Key": "ge"})
    assert granted.status_code == 201 and granted.json()["currency"] == "JPY"

    assert francs.http.put("/v1/catalog/customers/geneva", json=geneva, timeout=30).status_code == 409
    # naming no currency is the catalog's (EUR): a change too
    bare = francs.http.put("/v1/catalog/customers/geneva", json={"id": "geneva", "name": "Geneva SA"}, timeout=30)
    assert bare.status_code == 409
    assert francs.http.get("/v1/catalog/customers/geneva").json()["document"]["currency"] == "JPY"
    renamed = francs.http.put("/v1/catalog/customers/geneva", json={**geneva, "name": "Genf", "currency": "JPY"})
    assert renamed.status_code == 200  # anything else may change
    # deleted and made again under its id, it is the same party to its grant
    assert francs.http.delete("/v1/catalog/customers/geneva", timeout=30).status_code == 200
    again = francs.http.put("/v1/catalog/customers/geneva", json=geneva, timeout=30)
    assert again.status_code == 409 and "holds records" in again.json()["detail"] and "in JPY" in again.json()["detail"]
    again = francs.http.put("/v1/catalog/customers/geneva", json={**geneva, "currency": "JPY"}, timeout=30)
    assert again.status_code == 200, again.text
