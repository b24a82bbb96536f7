"""Billing rules end to end, each figure worked out by hand from the README's semantics:
rebilling after a void, months that have not ended, prices that change within a month, plans
for all tiers, provider-supplied charges, and XaaS skus billed as they aggregate."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from billing.periods import Period
from meterline.brokers import Broker
from tests.factories import FROM, catalog_document, vm_sample, xaas_usage
from tests.integration.harness import System, system_with_catalog, wait_for
from tests.integration.test_invoicing import get, post, push, rated_rows

pytestmark = pytest.mark.integration

PRICE_CHANGE = "2026-10-16T00:00:00Z"


def rules_catalog() -> dict[str, Any]:
    """The test catalog, plus: the provider's vCPU price doubles on 16 October (0.025 -> 0.05);
    its disk plan for every tier includes 1000 GiB-hours; a rack installation the provider
    supplies to the partner's customer; and four XaaS skus, one per aggregation kind."""
    document = catalog_document()
    acme = document["price_lists"][0]
    for plan in acme["plans"]:
        if plan["meter"] == "disk_gib_hours":
            plan["free_quantity"] = "1000"
    acme["plans"] += [
        {"meter": "vcpu_hours", "model": "per_unit", "unit_price": "0.05", "effective_from": PRICE_CHANGE},
        {
            "meter": "xaas_peak_units",
            "dimension": "licence",
            "model": "per_unit",
            "unit_price": "10",
            "effective_from": FROM,
        },
        {
            "meter": "xaas_latest_units",
            "dimension": "seat",
            "model": "per_unit",
            "unit_price": "5",
            "effective_from": FROM,
        },
        {
            "meter": "xaas_unit_hours",
            "dimension": "storage",
            "model": "per_unit",
            "unit_price": "0.001",
            "effective_from": FROM,
        },
    ]
    document["products"] += [
        {"id": "licence", "name": "Licences", "aggregation": "peak"},
        {"id": "seat", "name": "Seats", "aggregation": "latest"},
        {"id": "storage", "name": "Storage", "aggregation": "gauge"},
    ]
    document["one_time_charges"].append(
        {
            "id": "o3",
            "customer_id": "resold",
            "description": "Rack installation",
            "amount": "200",
            "day": "2026-10-10",
            "supplier": "provider",
        }
    )
    return document


def per_unit(meter: str, dimension: str, unit_price: str, effective_from: str = FROM) -> dict[str, str]:
    return {
        "meter": meter,
        "dimension": dimension,
        "model": "per_unit",
        "unit_price": unit_price,
        "effective_from": effective_from,
    }


@pytest.fixture
def rules(broker: Broker, tmp_path: Path) -> Iterator[System]:
    running = system_with_catalog(broker, tmp_path, rules_catalog())
    yield running.start_all()
    running.stop_all()


@pytest.fixture
def committed(broker: Broker, tmp_path: Path) -> Iterator[System]:
    """The test catalog, plus vDC CPU at the provider's list (0.012) and, for the direct customer,
    its own plan from 11 October (0.010) committing 50.00 a month."""
    document = catalog_document()
    vdc = {"meter": "vdc_cpu_ghz_hours", "model": "per_unit"}
    document["price_lists"][0]["plans"].append({**vdc, "unit_price": "0.012", "effective_from": FROM})
    document["customers"][0]["plans"] = [
        {**vdc, "unit_price": "0.010", "minimum_amount": "50.00", "effective_from": "2026-10-11T00:00:00Z"}
    ]
    running = system_with_catalog(broker, tmp_path, document)
    yield running.start_all()
    running.stop_all()


def october(day: int, hour: int = 10) -> datetime:
    return datetime(2026, 10, day, hour, 0, tzinfo=UTC)


def invoice(system: System, invoice_id: str) -> dict[str, Any]:
    return get(system, f"/v1/invoices/{invoice_id}").json()


def test_a_partner_pays_the_provider_price_in_force_at_each_hour_and_an_all_tier_allowance_once(rules: System):
    """The resold customer's VM (16 vCPU, a 1000 GiB ssd and a 1000 GiB hdd disk) runs one hour
    on 5 and one on 20 October: 32 vCPU-hours and 4000 GiB-hours of disk.

    Resold, invoiced by north (DE 19 %): support at the provider's fee 30.00; rack installation
    200.00; disk under the provider's plan for all tiers, 1000 included once, 3000 x 0.0002 = 0.60;
    vCPU at north's 0.03, 32 x 0.03 = 0.96. Subtotal 231.56, VAT 43.9964 -> 44.00, total 275.56.

    North, invoiced by the provider: support 30.00; the provider-supplied rack 200.00; disk 0.60;
    vCPU 16 x 0.025 = 0.40 before the 16th and 16 x 0.05 = 0.80 after. Subtotal 231.80, 20 % off
    46.36, net 185.44, VAT 19 % 35.2336 -> 35.23, total 220.67."""
    vm = {"interval_s": 3600, "vcpu": 16, "ram_mb": 0, "net_tx_bytes": 0}
    disks = [{"tier": "ssd", "size_gib": 1000}, {"tier": "hdd", "size_gib": 1000}]
    push(rules, [vm_sample("vm-r", "resold", at=october(day), disks=disks, **vm) for day in (5, 20)])
    wait_for(lambda: rated_rows(rules, "resold") == 6, what="usage")
    post(rules, "/v1/periods/2026-10/close")

    resold = invoice(rules, "2026-10.north.resold")
    assert [line["amount"] for line in resold["lines"]] == ["30.00", "200.00", "0.00", "0.60", "0.96"]
    assert (resold["subtotal"], resold["tax_amount"], resold["total"]) == ("231.56", "44.00", "275.56")

    north = invoice(rules, "2026-10.acme.north")
    assert [line["amount"] for line in north["lines"]] == ["30.00", "200.00", "0.00", "0.60", "0.40", "0.80"]
    assert (north["discount"], north["net"], north["total"]) == ("46.36", "185.44", "220.67")
    after_change = north["lines"][-1]
    assert (after_change["quantity"], after_change["unit_price"]) == ("16", "0.05")
    assert "2026-10-16 00:00" in after_change["description"]
    drill = get(rules, after_change["usage_url"]).json()
    assert drill["quantity"] == "16" and [row["hour"] for row in drill["rows"]] == ["2026-10-20T09:00:00Z"]


def test_xaas_skus_are_billed_as_they_aggregate(rules: System):
    """Direct, October. Licences bill each resource's peak: lic-1 reports 3, 7, 4, lic-2 reports
    2, so 7 + 2 = 9 x 10.00 = 90.00. Seats bill the latest level: 10 on the 3rd, 6 on the 28th:
    6 x 5.00 = 30.00. Storage is a stock: 360 GB for one hour = 360 GB-hours x 0.001 = 0.36,
    however many reports. With the old one-time charge of 1.00: subtotal 121.36, 10 % off 12.14
    (12.136), net 109.22, VAT 20 % 21.84 (21.844), total 131.06."""
    levels = [
        xaas_usage("licence", "3", "direct", october(5), "lic-1", "licence"),
        xaas_usage("licence", "7", "direct", october(10), "lic-1", "licence"),
        xaas_usage("licence", "4", "direct", october(20), "lic-1", "licence"),
        xaas_usage("licence", "2", "direct", october(6), "lic-2", "licence"),
        xaas_usage("seat", "10", "direct", october(3), "seats-1", "seat"),
        xaas_usage("seat", "6", "direct", october(28), "seats-1", "seat"),
        xaas_usage("storage", "360", "direct", october(5), "bucket-1", "GB"),
    ]
    push(rules, levels)
    wait_for(lambda: rated_rows(rules, "direct") == 7, what="usage")
    post(rules, "/v1/periods/2026-10/close")
    direct = invoice(rules, "2026-10.acme.direct")
    lines = {line["description"]: (line["quantity"], line["amount"]) for line in direct["lines"]}
    assert lines["Licences"] == ("9", "90.00")
    assert lines["Seats"] == ("6", "30.00")
    assert lines["Storage"] == ("360", "0.36")
    assert (direct["subtotal"], direct["discount"], direct["total"]) == ("121.36", "12.14", "131.06")
    drilled = {
        line["description"]: get(rules, line["usage_url"]).json()["quantity"]
        for line in direct["lines"]
        if line["description"] in ("Licences", "Seats", "Storage")
    }
    assert drilled == {"Licences": "9", "Seats": "6", "Storage": "360"}, "each line's usage adds up as it was billed"
    month = rules.usage("direct", granularity="month", **{"from": "2026-10-01T00:00:00Z", "to": "2026-11-01T00:00:00Z"})
    shown = {(row["meter"], row["dimension"]): Decimal(row["quantity"]) for row in month["rows"]}
    assert shown[("xaas_peak_units", "licence")] == 9 and shown[("xaas_latest_units", "seat")] == 6


def test_a_voided_invoice_is_billed_again_under_a_new_number(rules: System):
    """Direct's October: one VM hour (2 vCPU, 4 GiB RAM, 40 GiB ssd at 1000 free, 2 GB out):
    vCPU 2 x 0.025 = 0.05, RAM 4 x 0.004 = 0.016 -> 0.02, disk free, net 2 x 0.01 = 0.02,
    with the one-time 1.00: subtotal 1.09, 10 % off 0.11 (0.109), net 0.98, VAT 0.20 (0.196),
    total 1.18. Voided, it is credited (-1.18) and billed again as 2026-10.acme.direct~2."""
    push(rules, [vm_sample("vm-1", "direct", at=october(5), interval_s=3600)])
    wait_for(lambda: rated_rows(rules, "direct") == 4, what="usage")
    post(rules, "/v1/periods/2026-10/close")
    first = post(rules, "/v1/invoices/2026-10.acme.direct/issue")
    assert (first["number"], first["total"]) == ("ACME-000001", "1.18")
    post(rules, "/v1/invoices/2026-10.acme.direct/void")
    assert invoice(rules, "2026-10.acme.direct.credit")["total"] == "-1.18"

    closed = post(rules, "/v1/periods/2026-10/close")
    assert closed["drafted"] >= 1
    again = post(rules, "/v1/invoices/2026-10.acme.direct~2/issue")
    assert (again["number"], again["total"], again["status"]) == ("ACME-000003", "1.18", "issued")
    post(rules, "/v1/periods/2026-10/close")
    listed = {i["invoice_id"]: i["status"] for i in get(rules, "/v1/invoices?period=2026-10&buyer_id=direct").json()}
    assert listed == {
        "2026-10.acme.direct": "void",
        "2026-10.acme.direct.credit": "issued",
        "2026-10.acme.direct~2": "issued",
    }, "closing again leaves the issued rebill alone and bills nothing a third time"


def test_a_month_that_has_not_ended_can_be_previewed_but_not_issued(rules: System):
    now = datetime.now(UTC)
    this_month = f"{now:%Y-%m}"
    push(rules, [vm_sample("vm-1", "direct", at=now.replace(minute=0, second=0, microsecond=0))])
    wait_for(lambda: rated_rows(rules, "direct") >= 1, what="usage")
    post(rules, f"/v1/periods/{this_month}/close")
    one = rules.http.post(f"/v1/invoices/{this_month}.acme.direct/issue", timeout=30)
    assert one.status_code == 409 and "has not ended" in one.json()["detail"]
    whole = rules.http.post(f"/v1/periods/{this_month}/issue", timeout=30)
    assert whole.status_code == 409
    assert invoice(rules, f"{this_month}.acme.direct")["status"] == "draft"


def test_only_months_that_can_be_billed_are_closed(rules: System):
    """The catalog's first billable day is 2025-01-01 (the resold customer's subscription starts
    then): December 2019 ends before it, so it has nothing to bill. Next month and December 2298
    have not begun. Each close is refused with a problem detail and writes no draft; the current
    month still closes, as a preview: three drafts for the support fees running this month
    (direct's, resold's from north, and north's from the provider)."""
    this_month = Period.containing(datetime.now(UTC).date())
    refusals = [
        ("2019-12", "ends before the catalog's first billable day, 2025-01-01"),
        (this_month.next().name, "has not begun"),
        ("2298-12", "has not begun"),
    ]
    for name, reason in refusals:
        refused = rules.http.post(f"/v1/periods/{name}/close", timeout=30)
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        problem = refused.json()
        assert problem["type"] == "urn:meterline:problem:invalid-range" and reason in problem["detail"], problem
    assert get(rules, "/v1/invoices").json() == [], "no draft for any refused month"

    preview = post(rules, f"/v1/periods/{this_month.name}/close")
    assert preview["drafted"] == 3
    listed = get(rules, "/v1/invoices").json()
    assert {(i["period"], i["status"]) for i in listed} == {(this_month.name, "draft")}


def test_a_commitment_without_usage_is_billed_for_its_days_with_an_empty_drill_down(committed: System):
    """Direct's commitment takes effect on 11 October: 21 days of 31, 50.00 x 21/31 = 33.870...
    -> 33.87, a top-up alone since no vDC usage arrived. With the old one-time charge of 1.00:
    subtotal 34.87, 10 % off 3.49 (3.487), net 31.38, VAT 20 % 6.28 (6.276), total 37.66. The
    top-up's drill-down selects the vDC CPU usage of its days, of which there is none."""
    post(committed, "/v1/periods/2026-10/close")
    direct = invoice(committed, "2026-10.acme.direct")
    (line,) = [line for line in direct["lines"] if line["meter"] == "vdc_cpu_ghz_hours"]
    assert line["description"] == (
        "Virtual datacenter CPU, 2026-10-11 00:00 to 2026-11-01 00:00 UTC: minimum commitment top-up"
    )
    assert (line["quantity"], line["amount"]) == ("1", "33.87")
    assert (direct["subtotal"], direct["discount"], direct["total"]) == ("34.87", "3.49", "37.66")
    drill = get(committed, line["usage_url"]).json()
    assert (drill["meter"], drill["dimension"], drill["quantity"], drill["rows"]) == (
        "vdc_cpu_ghz_hours",
        "*",
        "0",
        [],
    )
    assert get(committed, f"/v1/invoices/2026-10.acme.direct/lines/{line['line_no']}/events").text == ""


def test_an_issued_line_drills_down_to_what_it_billed_while_usage_keeps_arriving(rules: System):
    """100 GB restored on 5 October is billed (4.50); 50 more for the 6th arrive after the issue:
    the issued line and its drill-down still say 100, and the November close bills the 50 as an
    adjustment (2.25)."""
    push(rules, [xaas_usage("restore_gb", "100", "direct", october(5))])
    wait_for(lambda: rated_rows(rules, "direct") == 1, what="usage")
    post(rules, "/v1/periods/2026-10/close")
    post(rules, "/v1/invoices/2026-10.acme.direct/issue")
    push(rules, [xaas_usage("restore_gb", "50", "direct", october(6), "bk-2")])
    wait_for(lambda: rated_rows(rules, "direct") == 2, what="the late usage")

    issued = invoice(rules, "2026-10.acme.direct")
    (line,) = [line for line in issued["lines"] if line["meter"] == "xaas_units"]
    assert (line["quantity"], line["amount"]) == ("100", "4.50")
    drill = get(rules, line["usage_url"]).json()
    assert drill["quantity"] == "100" and {row["resource_id"] for row in drill["rows"]} == {"bk-1"}
    events = get(rules, f"/v1/invoices/2026-10.acme.direct/lines/{line['line_no']}/events").text.splitlines()
    assert len(events) == 1

    post(rules, "/v1/periods/2026-11/close")
    november = invoice(rules, "2026-11.acme.direct")
    assert [(a["amount"], a["adjusts_period"]) for a in november["lines"] if a["kind"] == "adjustment"] == [
        ("2.25", "2026-10")
    ]
    assert Decimal(drill["amount"]) == Decimal("4.5")


def test_twenty_four_five_minute_samples_of_two_vcpu_are_exactly_four_vcpu_hours(rules: System):
    """24 samples of 2 vCPU x 300 s = 14,400 vCPU-seconds = 4 vCPU-hours exactly (each sample is
    1/6 vCPU-hour, which rounded to 12 places summed to 4.000000000008): the invoice line says 4,
    at 0.025 = 0.10, and its drill-down adds up to 4."""
    vm = {"interval_s": 300, "vcpu": 2, "ram_mb": 0, "disks": [], "net_tx_bytes": 0}
    start = october(7, 9)
    samples = [vm_sample("vm-1", "direct", at=start + timedelta(minutes=5 * n), **vm) for n in range(1, 25)]
    push(rules, samples)
    wait_for(lambda: rated_rows(rules, "direct") == 24, what="usage")
    post(rules, "/v1/periods/2026-10/close")
    (line,) = [line for line in invoice(rules, "2026-10.acme.direct")["lines"] if line["meter"] == "vcpu_hours"]
    assert (line["quantity"], line["amount"]) == ("4", "0.10")
    assert get(rules, line["usage_url"]).json()["quantity"] == "4"
