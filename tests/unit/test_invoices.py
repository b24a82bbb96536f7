"""Golden invoices built from rated usage totals and a small catalog; figures worked by hand."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from billing.adapters.catalog_file import load_catalog
from billing.catalog import Catalog
from billing.invoices import Invoice, UsageTotal, build_invoices
from billing.period_close import check_billable
from billing.periods import Period
from billing.pricing import price_book
from meterline.exceptions import InvalidCatalog, InvalidRange
from tests.factories import catalog_document

NOVEMBER = Period.parse("2026-11")


def catalog(**changes: Any) -> Catalog:
    return Catalog.model_validate({**catalog_document(), **changes})


def usage(customer_id: str, meter: str, dimension: str, unit: str, quantity: str) -> UsageTotal:
    return UsageTotal(customer_id, meter, dimension, unit, Fraction(quantity), NOVEMBER.start, NOVEMBER.end)


USAGE = [
    usage("direct", "vcpu_hours", "", "vCPU-hour", "1000.5"),
    usage("direct", "net_tx_gb", "", "GB", "1200"),
    usage("resold", "vcpu_hours", "", "vCPU-hour", "2000"),
]


def invoices() -> dict[str, Invoice]:
    return {invoice.invoice_id: invoice for invoice in build_invoices(catalog(), NOVEMBER, USAGE)}


def test_direct_customer_invoice_mixes_fees_one_time_charges_and_usage():
    """Support from the 10th: 30 x 21/30 = 21.00; set-up 100.00; migration 480.00;
    net: 1000 x 0.01 = 10.00 + 200 x 0.005 = 1.00; vCPU: 1000.5 x 0.025 = 25.0125 -> 25.01.
    Subtotal 637.01, discount 10 % = 63.70 (63.701), net 573.31, VAT 20 % = 114.66 (114.662), total 687.97."""
    invoice = invoices()["2026-11.acme.direct"]
    assert [line.amount for line in invoice.lines] == [
        Decimal("21.00"),
        Decimal("100.00"),
        Decimal("480.00"),
        Decimal("10.00"),
        Decimal("1.00"),
        Decimal("25.01"),
    ]
    assert (invoice.subtotal, invoice.discount, invoice.net, invoice.tax_amount, invoice.total) == (
        Decimal("637.01"),
        Decimal("63.70"),
        Decimal("573.31"),
        Decimal("114.66"),
        Decimal("687.97"),
    )


def test_a_resold_customer_is_invoiced_by_its_partner_at_the_partner_prices():
    """Issued by north: support at the provider price (north has no fee of its own) 30.00;
    vCPU rated at north's 0.03: 60.00. Net 90.00, VAT 19 % 17.10, total 107.10."""
    invoice = invoices()["2026-11.north.resold"]
    assert invoice.issuer.id == "north"
    assert invoice.total == Decimal("107.10")


def test_the_partner_is_invoiced_by_the_provider_at_provider_prices_less_its_discount():
    """Support 30.00; vCPU 2000 x 0.025 = 50.00; subtotal 80.00, 20 % off = 16.00, net 64.00,
    VAT 19 % = 12.16, total 76.16."""
    invoice = invoices()["2026-11.acme.north"]
    assert invoice.covered_customers == ("resold",)
    assert (invoice.subtotal, invoice.discount, invoice.total) == (Decimal("80.00"), Decimal("16.00"), Decimal("76.16"))


def test_a_party_with_nothing_to_bill_gets_no_invoice():
    quiet = build_invoices(catalog(subscriptions=[], one_time_charges=[]), NOVEMBER, USAGE[2:])
    assert {invoice.buyer_id for invoice in quiet} == {"resold", "north"}


def test_a_subscription_not_running_in_the_period_looks_up_no_fee():
    """December 2019 is before both subscriptions start (2025-01-01 and 2026-11-10) and before
    the support fee's first price (2020-01-01): nothing is billed, and no missing fee is reported."""
    assert build_invoices(catalog(), Period.parse("2019-12"), []) == []


TODAY = date(2026, 12, 4)


@pytest.mark.parametrize("name", ["2025-01", "2026-11", "2026-12"])
def test_a_month_from_the_first_billable_day_to_the_current_one_may_be_closed(name):
    """The test catalog's first billable day is 2025-01-01 (subscription s2); on 4 December 2026
    the current month is December, closed as a preview."""
    check_billable(catalog(), Period.parse(name), TODAY)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("2019-12", "ends before the catalog's first billable day, 2025-01-01"),
        ("2024-12", "ends before the catalog's first billable day, 2025-01-01"),
        ("2027-01", "has not begun"),
        ("2298-12", "has not begun"),
    ],
)
def test_a_month_before_the_first_billable_day_or_after_the_current_one_is_refused(name, reason):
    """December 2024 ends on 2025-01-01 (its last day is the 31st): nothing of it can be billed."""
    with pytest.raises(InvalidRange, match=reason):
        check_billable(catalog(), Period.parse(name), TODAY)


def test_a_catalog_without_subscriptions_or_charges_has_no_first_billable_day():
    check_billable(catalog(subscriptions=[], one_time_charges=[]), Period.parse("1970-01"), TODAY)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"customers": [{"id": "x", "name": "X", "partner_id": "nobody"}]}, "unknown partner"),
        ({"customers": [{"id": "x", "name": "X", "jurisdiction": "IT"}]}, "no tax rate"),
        ({"customers": [{"id": "acme", "name": "Clash"}]}, "must all differ"),
        ({"currency": "euro"}, "ISO 4217"),
        (
            {"subscriptions": [{"id": "s", "customer_id": "ghost", "product_id": "support", "start": "2026-01-01"}]},
            "ghost",
        ),
    ],
)
def test_a_catalog_that_contradicts_itself_is_refused_with_the_reason(change, message):
    with pytest.raises((ValueError, InvalidCatalog), match=message):
        catalog(**change)


def test_the_demo_catalog_loads_and_prices_every_simulated_meter():
    demo = load_catalog(Path("billing/catalog.yaml"))
    book = price_book(demo)
    assert {price.meter.value for price in book.prices} >= {"vcpu_hours", "xaas_units", "vdc_cpu_ghz_hours"}


def test_a_malformed_catalog_file_names_the_entry(tmp_path):
    path = tmp_path / "catalog.yaml"
    path.write_text("currency: EUR\nprovider: {id: acme, name: Acme, invoice_prefix: ACME}\ncustomers: [{name: X}]\n")
    with pytest.raises(InvalidCatalog, match=r"customers\.0\.id"):
        load_catalog(path)
