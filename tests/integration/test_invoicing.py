"""From pushed usage to issued invoices, e-invoices, drill-down, late usage and credit notes."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import facturx
import httpx
import orjson
import pytest

from schemas import columnar
from schemas.events import EventType, encode_batch
from tests.factories import vm_sample, xaas_usage
from tests.integration.harness import System, wait_for

pytestmark = pytest.mark.integration

OCTOBER = datetime(2026, 10, 5, 10, 0, tzinfo=UTC)
BIG_VM = {
    "interval_s": 3600,
    "vcpu": 16,
    "ram_mb": 65536,
    "disks": [{"device": "vda", "tier": "ssd", "size_gib": 1000}],
    "net_tx_bytes": 600_000_000_000,
}


def post(system: System, path: str) -> dict[str, Any]:
    response = system.http.post(f"{path}", timeout=60)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def get(system: System, path: str) -> httpx.Response:
    response = system.http.get(f"{path}", timeout=60)
    assert response.status_code == 200, response.text
    return response


def push(system: System, events: list) -> None:
    """As the agents send by default: the VM samples as one Arrow stream, the rest as JSON."""
    samples = [event for event in events if event["type"] == EventType.VM_SAMPLE.value]
    others = [event for event in events if event["type"] != EventType.VM_SAMPLE.value]
    bodies = [(columnar.encode(samples), columnar.CONTENT_TYPE)] if samples else []
    bodies += [(encode_batch(others), "application/json")] if others else []
    for body, content_type in bodies:
        response = system.http.post("/v1/events", content=body, headers={"Content-Type": content_type}, timeout=30)
        assert response.status_code == 202 and not response.json()["rejected"], response.text


def rated_rows(system: System, customer_id: str) -> int:
    return sum(row["rated_rows"] for row in system.usage(customer_id, granularity="month")["rows"])


def test_usage_becomes_issued_invoices_whose_lines_drill_down_to_the_events(billing: System):
    """Direct, October: one-time 1.00; disk 3000 GiB-h x 0.0002 = 0.60;
    net tx 1800 GB graduated: 1000 x 0.01 + 800 x 0.005 = 14.00; RAM 192 GiB-h x 0.004 = 0.768 -> 0.77;
    vCPU 48 h x 0.025 = 1.20; restores 100 GB x 0.045 = 4.50. Subtotal 22.07, 10 % off 2.21, net 19.86,
    VAT 20 % 3.97, total 23.83.
    Resold (north's customer, DE), at north's prices: support 30.00, disk 0.20, net tx 6.00,
    RAM 0.256 -> 0.26, vCPU 16 x 0.03 = 0.48: subtotal 36.94, VAT 19 % 7.02, total 43.96.
    North, at the provider's prices: support 30.00, disk 0.20, net tx 6.00, RAM 0.26, vCPU 0.40:
    subtotal 36.86, 20 % off 7.37, net 29.49, VAT 19 % 5.60, total 35.09."""
    direct = [vm_sample(f"vm-{n}", customer_id="direct", at=OCTOBER, **BIG_VM) for n in range(3)]
    direct.append(xaas_usage(quantity="100", customer_id="direct", at=OCTOBER))
    push(billing, [*direct, vm_sample("vm-r", customer_id="resold", at=OCTOBER, **BIG_VM)])
    wait_for(lambda: rated_rows(billing, "direct") == 13 and rated_rows(billing, "resold") == 4, what="usage")

    closed = post(billing, "/v1/periods/2026-10/close")
    assert (closed["drafted"], closed["unbilled_customers"]) == (3, [])
    totals = {i["invoice_id"]: i["total"] for i in get(billing, "/v1/invoices?period=2026-10").json()}
    assert totals == {"2026-10.acme.direct": "23.83", "2026-10.north.resold": "43.96", "2026-10.acme.north": "35.09"}

    invoice = get(billing, "/v1/invoices/2026-10.acme.direct").json()
    vcpu = next(line for line in invoice["lines"] if line["meter"] == "vcpu_hours")
    drill = get(billing, vcpu["usage_url"]).json()
    assert Decimal(drill["quantity"]) == Decimal(vcpu["quantity"]) == 48
    assert {row["resource_id"] for row in drill["rows"]} == {"vm-0", "vm-1", "vm-2"}
    spreadsheet = list(csv.DictReader(io.StringIO(get(billing, vcpu["usage_url"] + ".csv").text)))
    assert sum(Decimal(row["quantity"]) for row in spreadsheet) == 48
    events = get(billing, f"/v1/invoices/2026-10.acme.direct/lines/{vcpu['line_no']}/events").text.splitlines()
    behind = sorted((orjson.loads(event) for event in events), key=lambda event: event["id"])
    assert behind == sorted(direct[:3], key=lambda event: event["id"]), "each sample as the JSON event it stands for"

    numbers = [post(billing, f"/v1/invoices/{i}/issue")["number"] for i in sorted(totals)]
    assert numbers == ["ACME-000001", "ACME-000002", "NTH-000001"]
    assert post(billing, "/v1/invoices/2026-10.acme.direct/issue")["number"] == "ACME-000001"

    pdf = get(billing, "/v1/invoices/2026-10.acme.direct/pdf").content
    _name, xml = facturx.get_xml_from_pdf(pdf, check_xsd=True)
    assert b"ACME-000001" in xml and b"23.83" in xml
    assert b"ACME-000001" in get(billing, "/v1/invoices/2026-10.acme.direct/ubl").content
    assert "Acme Cloud" in get(billing, "/v1/invoices/2026-10.acme.direct/html").text
    assert len(get(billing, "/v1/invoices/2026-10.acme.direct/csv").text.splitlines()) == len(invoice["lines"]) + 1

    late = xaas_usage(quantity="100", customer_id="direct", at=datetime(2026, 10, 20, tzinfo=UTC))
    push(billing, [late])
    wait_for(lambda: rated_rows(billing, "direct") == 14, what="the late usage")
    post(billing, "/v1/periods/2026-11/close")
    november = get(billing, "/v1/invoices/2026-11.acme.direct").json()
    adjustment = [line for line in november["lines"] if line["kind"] == "adjustment"]
    assert [(a["amount"], a["adjusts_period"]) for a in adjustment] == [("4.50", "2026-10")]
    assert get(billing, "/v1/invoices/2026-10.acme.direct").json()["total"] == "23.83"

    post(billing, "/v1/invoices/2026-11.acme.direct/issue")
    later = xaas_usage(quantity="100", customer_id="direct", at=datetime(2026, 10, 25, tzinfo=UTC))
    push(billing, [later])
    wait_for(lambda: rated_rows(billing, "direct") == 15, what="the later usage")
    post(billing, "/v1/periods/2026-12/close")
    december = get(billing, "/v1/invoices/2026-12.acme.direct").json()
    adjustments = [(a["amount"], a["adjusts_period"]) for a in december["lines"] if a["kind"] == "adjustment"]
    assert adjustments == [("4.50", "2026-10")], "only the new late usage; November's own lines are not redone"

    voided = post(billing, "/v1/invoices/2026-10.acme.direct/void")
    assert (voided["status"], voided["number"]) == ("void", "ACME-000001")
    credit = get(billing, "/v1/invoices/2026-10.acme.direct.credit").json()
    assert (credit["number"], credit["credits_number"], credit["total"]) == ("ACME-000004", "ACME-000001", "-23.83")
    customer_view = get(billing, "/v1/customers/direct/invoices").json()
    assert {i["buyer_id"] for i in customer_view} == {"direct"}


def test_invoicing_mistakes_get_a_4xx_with_a_reason(billing: System):
    push(billing, [vm_sample("vm-1", customer_id="direct", at=OCTOBER)])
    wait_for(lambda: rated_rows(billing, "direct") == 4, what="usage")
    for not_a_month in ("2026-13", "\uff12026-11", "2026-11%0A"):  # a full-width 2, a final newline
        assert billing.http.post(f"/v1/periods/{not_a_month}/close", timeout=30).status_code == 422, not_a_month
    post(billing, "/v1/periods/2026-10/close")
    paying_a_draft = billing.http.post("/v1/invoices/2026-10.acme.direct/pay", timeout=30)
    assert paying_a_draft.status_code == 409 and "draft" in paying_a_draft.json()["detail"]
    assert billing.http.get("/v1/invoices/nope", timeout=30).status_code == 404
    fee_line = billing.http.get("/v1/invoices/2026-10.acme.direct/lines/1/usage", timeout=30)
    assert fee_line.status_code == 400 and "one_time line" in fee_line.json()["detail"]
    draft_einvoice = billing.http.get("/v1/invoices/2026-10.acme.direct/cii", timeout=30)
    assert draft_einvoice.status_code == 400 and "never issued" in draft_einvoice.json()["detail"]


def test_issuing_a_whole_period_numbers_each_issuer_without_gaps(billing: System):
    push(billing, [vm_sample("vm-1", customer_id="direct", at=OCTOBER)])
    wait_for(lambda: rated_rows(billing, "direct") == 4, what="usage")
    post(billing, "/v1/periods/2026-10/close")
    post(billing, "/v1/invoices/2026-10.acme.north/issue")
    response = billing.http.post("/v1/periods/2026-10/issue", timeout=60)
    issued = {invoice["invoice_id"]: invoice["number"] for invoice in response.json()}
    assert issued == {"2026-10.acme.direct": "ACME-000002", "2026-10.north.resold": "NTH-000001"}
    again = billing.http.post("/v1/periods/2026-10/issue", timeout=60)
    assert again.json() == []


def test_a_buyer_sees_its_invoice_once_issued_and_never_its_sellers_draft(billing: System):
    """A close's drafts are its issuer's work in progress: a customer saw its partner's preview."""
    push(billing, [vm_sample("vm-1", customer_id="resold", at=OCTOBER)])
    wait_for(lambda: rated_rows(billing, "resold") == 4, what="usage")
    post(billing, "/v1/periods/2026-10/close")
    keys = {
        party: billing.client(
            billing.http.post("/v1/keys", json={"name": party, "role": role, "party_id": party}).json()["key"]
        )
        for party, role in (("resold", "customer"), ("north", "partner"))
    }
    resold, north = keys["resold"], keys["north"]
    assert resold.get("/v1/invoices").json() == []
    assert resold.get("/v1/invoices/2026-10.north.resold").status_code == 404
    assert north.get("/v1/invoices/2026-10.north.resold").json()["status"] == "draft", "its issuer sees it"
    assert north.get("/v1/invoices/2026-10.acme.north").status_code == 404, "the provider's draft to it: not yet"
    post(billing, "/v1/periods/2026-10/issue")
    assert [i["invoice_id"] for i in resold.get("/v1/invoices").json()] == ["2026-10.north.resold"]
    assert north.get("/v1/invoices/2026-10.acme.north").json()["status"] == "issued"
