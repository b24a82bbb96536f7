"""Customers and partners billed in their own currencies, from price lists per currency, with
no conversion: every figure below is worked out by hand in its test's docstring."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from pydantic import ValidationError

from billing.catalog import Catalog, describe
from billing.invoices import Invoice, UsageTotal, build_invoices
from billing.money import minor_unit, round_money
from billing.period_close import late_usage_lines
from billing.periods import Period
from billing.pricing import price_book
from billing.records import InvoiceRecord, InvoiceStatus
from billing.scope import Scope
from meterline.exceptions import InvalidCatalog
from pipeline.metering import event_columns, measure
from pipeline.rating import rate_quantities
from schemas.events import encode_batch
from schemas.intake import split_message
from tests.factories import vm_sample

FROM = "2020-01-01T00:00:00Z"
NOVEMBER = Period.parse("2026-11")


def per_unit(meter: str, price: str) -> dict[str, Any]:
    return {"meter": meter, "model": "per_unit", "unit_price": price, "effective_from": FROM}


def document() -> dict[str, Any]:
    return {
        "currency": "EUR",
        "provider": {"id": "acme", "name": "Acme Cloud", "invoice_prefix": "ACME"},
        "partners": [
            {
                "id": "north",
                "name": "North",
                "invoice_prefix": "NTH",
                "discount_percent": "20",
                "jurisdiction": "DE",
                "currency": "CHF",
            },
        ],  # fmt: skip
        "tax_rates": [
            {"jurisdiction": "FR", "rate_percent": "20"},
            {"jurisdiction": "DE", "rate_percent": "19"},
            {"jurisdiction": "CH", "rate_percent": "8.1"},
            {"jurisdiction": "JP", "rate_percent": "10"},
        ],
        "products": [{"id": "support", "name": "Support"}],
        "price_lists": [
            {
                "seller_id": "acme",
                "plans": [per_unit("vcpu_hours", "0.025")],
                "fees": [{"product_id": "support", "amount": "30.00", "effective_from": FROM}],
            },
            {
                "seller_id": "acme",
                "currency": "CHF",
                "plans": [per_unit("vcpu_hours", "0.03")],
                "fees": [{"product_id": "support", "amount": "40.00", "effective_from": FROM}],
            },
            {"seller_id": "acme", "currency": "JPY", "plans": [per_unit("vcpu_hours", "4")]},
            {"seller_id": "north", "currency": "CHF", "plans": [per_unit("vcpu_hours", "0.05")]},
        ],  # fmt: skip
        "customers": [
            {"id": "direct", "name": "Direct SAS"},
            {"id": "zurich", "name": "Zurich AG", "jurisdiction": "CH", "currency": "CHF"},
            {"id": "tokyo", "name": "Tokyo KK", "jurisdiction": "JP", "currency": "JPY"},
            {"id": "resold", "name": "Resold GmbH", "partner_id": "north", "jurisdiction": "DE"},
        ],
        "subscriptions": [{"id": "s1", "customer_id": "zurich", "product_id": "support", "start": "2026-01-01"}],
    }


def catalog(**changes: Any) -> Catalog:
    return Catalog.model_validate({**document(), **changes})


def vcpu_hours(customer_id: str, hours: int) -> UsageTotal:
    return UsageTotal(customer_id, "vcpu_hours", "", "vCPU-hour", Fraction(hours), NOVEMBER.start, NOVEMBER.end)


def invoices(usage: list[UsageTotal], of: Catalog | None = None) -> dict[str, Invoice]:
    return {invoice.buyer_id: invoice for invoice in build_invoices(of or catalog(), NOVEMBER, usage)}


def test_each_party_is_billed_in_its_own_currency_or_its_partners_or_the_catalogs():
    found = catalog()
    assert [found.currency_of(p) for p in ("direct", "zurich", "tokyo", "north", "resold", "acme")] == [
        "EUR", "CHF", "JPY", "CHF", "CHF", "EUR",
    ]  # fmt: skip


def test_a_yen_customer_is_invoiced_in_whole_yen_at_the_yen_list():
    """1,000 vCPU-hours x 4 JPY = 4,000 JPY; 10 % tax = 400; total 4,400 JPY."""
    tokyo = invoices([vcpu_hours("tokyo", 1000)])["tokyo"]
    assert (tokyo.currency, tokyo.subtotal, tokyo.tax_amount, tokyo.total) == (
        "JPY", Decimal("4000"), Decimal("400"), Decimal("4400"),
    )  # fmt: skip


def test_a_franc_customer_pays_franc_prices_and_fees():
    """100 vCPU-hours x 0.03 CHF = 3.00, support 40.00 CHF a month (the whole of November):
    subtotal 43.00; 8.1 % tax = 3.483, so 3.48; total 46.48 CHF."""
    zurich = invoices([vcpu_hours("zurich", 100)])["zurich"]
    assert zurich.currency == "CHF"
    assert sorted(line.amount for line in zurich.lines) == [Decimal("3.00"), Decimal("40.00")]
    assert (zurich.subtotal, zurich.tax_amount, zurich.total) == (Decimal("43.00"), Decimal("3.48"), Decimal("46.48"))


def test_a_partner_in_francs_buys_at_the_providers_franc_list_and_sells_at_its_own():
    """Resold (North's, so in francs) used 100 vCPU-hours.
    North's invoice to it: 100 x 0.05 = 5.00 CHF; 19 % = 0.95; total 5.95 CHF.
    Acme's invoice to North: 100 x 0.03 = 3.00 CHF, less 20 % = 0.60, net 2.40; 19 % = 0.456,
    so 0.46; total 2.86 CHF."""
    billed = invoices([vcpu_hours("resold", 100)])
    resold, north = billed["resold"], billed["north"]
    assert (resold.currency, resold.total) == ("CHF", Decimal("5.95"))
    assert (north.currency, north.net, north.tax_amount, north.total) == (
        "CHF", Decimal("2.40"), Decimal("0.46"), Decimal("2.86"),
    )  # fmt: skip


def test_the_catalogs_currency_is_unchanged_for_those_who_name_none():
    """100 vCPU-hours x 0.025 = 2.50 EUR; 20 % = 0.50; total 3.00 EUR."""
    direct = invoices([vcpu_hours("direct", 100)])["direct"]
    assert (direct.currency, direct.total) == ("EUR", Decimal("3.00"))


def test_a_currency_without_a_price_list_prices_nothing_rather_than_converting():
    customers = [*document()["customers"], {"id": "boston", "name": "Boston Inc", "currency": "USD"}]
    with pytest.raises(InvalidCatalog, match="no price plan in USD"):
        invoices([vcpu_hours("boston", 1)], catalog(customers=customers))
    # a close notes the buyer it cannot price and bills the others: direct, 100 x 0.025 = 2.50
    unpriced: dict[str, str] = {}
    usage = [vcpu_hours("boston", 1), vcpu_hours("direct", 100)]
    built = {i.buyer_id: i for i in build_invoices(catalog(customers=customers), NOVEMBER, usage, None, unpriced)}
    assert "boston" not in built and "no price plan in USD" in unpriced["boston"]
    assert built["direct"].subtotal == Decimal("2.50")


def test_the_stream_rates_each_customer_in_its_currency_and_never_at_another_currencys_price():
    """A 300 s sample of 2 vCPUs is 1/6 vCPU-hour: tokyo's at 4 JPY is 0.666666666667 JPY
    (exact; rounded at the invoice), direct's at 0.025 EUR is 0.004166666667 EUR; boston (USD,
    with no USD list) is refused, not priced in euros."""
    customers = [*document()["customers"], {"id": "boston", "name": "Boston Inc", "currency": "USD"}]
    book = price_book(catalog(customers=customers))
    samples = [
        vm_sample("vm-" + customer, customer_id=customer, ram_mb=0, disks=[], net_tx_bytes=0)
        for customer in ("tokyo", "direct", "boston")
    ]
    rated, unpriced = rate_quantities(measure(event_columns(split_message(encode_batch(samples))), {}), book)
    rows = {(r["customer_id"], r["currency"]): r["amount"] for r in rated.iter_rows(named=True)}
    assert rows == {("tokyo", "JPY"): Decimal("0.666666666667"), ("direct", "EUR"): Decimal("0.004166666667")}
    assert len(unpriced) == 1 and "no price in USD in force" in next(iter(unpriced.values()))


def test_a_seller_has_one_list_per_currency_and_codes_are_iso_4217():
    lists = document()["price_lists"]
    with pytest.raises(ValidationError, match="one price list per currency"):
        catalog(price_lists=[*lists, {"seller_id": "acme", "currency": "EUR"}])
    with pytest.raises(ValidationError):
        catalog(customers=[{"id": "x", "name": "X", "currency": "euro"}], subscriptions=[])
    with pytest.raises(ValidationError, match="ISO 4217"):
        catalog(customers=[{"id": "x", "name": "X", "currency": "XYZ"}], subscriptions=[])


def test_only_currencies_in_use_are_billed_in():
    for code in ("XAU", "XTS", "XXX", "CHE", "DEM", "BGN"):  # a metal, test codes, a fund, withdrawn ones
        with pytest.raises(ValidationError, match="currency in use"):
            catalog(customers=[{"id": "x", "name": "X", "currency": code}], subscriptions=[])
    assert catalog(customers=[{"id": "x", "name": "X", "currency": "XOF"}], subscriptions=[]).currency_of("x") == "XOF"


def test_a_subscription_needs_a_fee_in_its_buyers_currency_from_its_first_month():
    tokyo = {"id": "s2", "customer_id": "tokyo", "product_id": "support", "start": "2026-11-20"}
    with pytest.raises(ValidationError, match="s2: no fee in JPY for product support") as refused:
        catalog(subscriptions=[tokyo])
    assert describe(refused.value).startswith("s2: no fee in JPY")  # what a 422 says, no pydantic prefix
    # a partner's customer: its partner's list, else the provider's in its currency (CHF, 40.00)
    resold = {"id": "s3", "customer_id": "resold", "product_id": "support", "start": "2026-11-20"}
    assert catalog(subscriptions=[resold]).fee_for("north", "support", NOVEMBER.start, "CHF").amount == 40
    late_fee = document()["price_lists"]
    late_fee[1]["fees"][0]["effective_from"] = "2026-11-15T00:00:00Z"  # after 1 November, the first billed day
    with pytest.raises(ValidationError, match="s1: no fee in CHF"):
        catalog(price_lists=late_fee)


class IssuedNovember:
    """A ledger holding one issued November invoice, and the usage a close finds now."""

    def __init__(self, issued: InvoiceRecord, usage: list[UsageTotal]) -> None:
        self.issued, self.usage = issued, usage

    def headers(self, scope: Scope, *, period: str | None = None, buyer_id: str | None = None) -> list[InvoiceRecord]:
        return [self.issued] if period == NOVEMBER.name else []

    def adjustments_to(self, adjusted: Period, *, excluding: Period) -> dict[tuple[str, str], Decimal]:
        return {}

    def own_adjustments(self, period: Period) -> dict[str, Decimal]:
        return {}

    def totals(self, period: Period, price_changes: Any, cutoff: Any, customers: Any = None) -> list[UsageTotal]:
        return self.usage if period == NOVEMBER else []


def test_late_usage_is_billed_in_the_currency_its_month_was_issued_in_or_not_at_all():
    """Tokyo's November: 1,000 vCPU-hours x 4 JPY = 4,000 JPY issued; 100 more hours arrive late:
    400 JPY on December's invoice. Had Tokyo been moved to francs since (the API refuses it), the
    month rebuilt in francs (1,100 x 0.03 = 33.00 CHF) is not compared with the yen it billed."""
    (issued,) = [i for i in build_invoices(catalog(), NOVEMBER, [vcpu_hours("tokyo", 1000)]) if i.buyer_id == "tokyo"]
    record = replace(InvoiceRecord.draft(issued, 1, NOVEMBER.end), status=InvoiceStatus.ISSUED)
    assert record.subtotal == Decimal("4000")
    november = IssuedNovember(record, [vcpu_hours("tokyo", 1100)])
    december, now = NOVEMBER.next(), datetime(2026, 12, 2, tzinfo=UTC)

    (late,) = late_usage_lines(november, november, catalog(), december, now, 1)["tokyo"]
    assert (late.amount, late.adjusts_period) == (Decimal("400"), "2026-11")
    in_francs = [{**c, "currency": "CHF"} if c["id"] == "tokyo" else c for c in document()["customers"]]
    assert late_usage_lines(november, november, catalog(customers=in_francs), december, now, 1) == {}
    # in dollars, which no list prices: noted for the close to list, not a failure of the close
    in_dollars = [{**c, "currency": "USD"} if c["id"] == "tokyo" else c for c in document()["customers"]]
    unpriced: dict[str, str] = {}
    assert late_usage_lines(november, november, catalog(customers=in_dollars), december, now, 1, unpriced) == {}
    assert "no price plan in USD" in unpriced["tokyo"]


def test_minor_units_are_iso_4217s_not_the_display_digits():
    """CLDR (babel) shows Serbian dinars and Iraqi dinars whole; ISO 4217 counts paras (0.01) and
    fils (0.001): an invoice of 10.005 RSD is 10.01, of 10.0005 IQD 10.001."""
    assert [minor_unit(code) for code in ("EUR", "JPY", "KWD", "RSD", "IQD")] == [
        Decimal("0.01"), Decimal(1), Decimal("0.001"), Decimal("0.01"), Decimal("0.001"),
    ]  # fmt: skip
    assert round_money(Decimal("10.005"), "RSD") == Decimal("10.01")
    assert round_money(Decimal("10.0005"), "IQD") == Decimal("10.001")
