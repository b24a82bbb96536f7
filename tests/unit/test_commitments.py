"""A minimum commitment is owed for the days its plan is in force, with or without usage.

November 2026 has 30 days. A day belongs to the plan the pricing rule chooses at its 00:00 UTC;
the commitment owed is ``minimum_amount x days / 30``, exact, and the top-up is that less what
the plan's other lines bill once rounded, rounded once. Figures worked by hand.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from billing.catalog import Catalog
from billing.invoices import Invoice, InvoiceLine, UsageScope, UsageTotal, build_invoices, partner_usage_so_far
from billing.periods import Period
from tests.factories import FROM, catalog_document

NOVEMBER = Period.parse("2026-11")
VDC = "vdc_cpu_ghz_hours"
LABEL = "Virtual datacenter CPU"
TOP_UP = "minimum commitment top-up"


def november(day: int, hour: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


DECEMBER = datetime(2026, 12, 1, tzinfo=UTC)


def vdc_plan(unit_price: str, minimum: str = "0", effective_from: str = FROM) -> dict[str, str]:
    return {
        "meter": VDC,
        "model": "per_unit",
        "unit_price": unit_price,
        "minimum_amount": minimum,
        "effective_from": effective_from,
    }


def committed_catalog(
    direct_plans: list[dict[str, str]],
    list_minimum: str = "0",
    resold_plans: list[dict[str, str]] | None = None,
    currency: str = "EUR",
) -> Catalog:
    """The test catalog without subscriptions or one-time charges, so that its invoices hold
    usage lines only; the provider's list prices vDC CPU at 0.012 (``list_minimum`` committed)."""
    document: dict[str, Any] = {**catalog_document(), "currency": currency, "subscriptions": [], "one_time_charges": []}
    document["price_lists"][0]["plans"].append(vdc_plan("0.012", list_minimum))
    document["customers"][0]["plans"] = direct_plans
    document["customers"][1]["plans"] = resold_plans or []
    return Catalog.model_validate(document)


def vdc_usage(customer_id: str, quantity: str, start: datetime, end: datetime = DECEMBER) -> UsageTotal:
    """A vDC's allocated GHz-hours over ``[start, end)``: the close cuts usage where a plan changes."""
    return UsageTotal(customer_id, VDC, "allocation_pool", "GHz-hour", Fraction(quantity), start, end)


def invoices(catalog: Catalog, usage: list[UsageTotal]) -> dict[str, Invoice]:
    return {invoice.invoice_id: invoice for invoice in build_invoices(catalog, NOVEMBER, usage)}


def vdc_lines(invoice: Invoice) -> list[InvoiceLine]:
    return [line for line in invoice.lines if line.meter == VDC]


def billed(invoice: Invoice) -> list[tuple[str, Decimal]]:
    return [(line.description, line.amount) for line in vdc_lines(invoice)]


def test_a_month_without_usage_owes_the_whole_commitment_of_a_plan_in_force_all_month():
    """Direct's own plan commits 50.00 a month since 2020. November has no usage: the plan is in
    force all 30 days, 50.00 x 30/30 = 50.00, billed as a top-up, the invoice's only line (it
    exists because of it). 10 % off = 5.00, net 45.00, VAT 20 % = 9.00, total 54.00. The line's
    scope is the month, in the plan's own dimension (all), where no usage lies: its drill-down is
    empty."""
    built = invoices(committed_catalog([vdc_plan("0.010", "50.00")]), [])
    assert set(built) == {"2026-11.acme.direct"}
    direct = built["2026-11.acme.direct"]
    (line,) = direct.lines
    assert (line.description, line.quantity, line.unit, line.unit_price, line.amount) == (
        f"{LABEL}: {TOP_UP}",
        Decimal(1),
        "",
        Decimal("50.00"),
        Decimal("50.00"),
    )
    assert (line.meter, line.dimension, line.scopes) == (VDC, "*", (UsageScope("*", NOVEMBER.start, DECEMBER),))
    assert (direct.subtotal, direct.discount, direct.net, direct.tax_amount, direct.total) == (
        Decimal("50.00"),
        Decimal("5.00"),
        Decimal("45.00"),
        Decimal("9.00"),
        Decimal("54.00"),
    )


FROM_THE_11TH = f"{LABEL}, 2026-11-11 00:00 to 2026-12-01 00:00 UTC"
BEFORE_THE_11TH = f"{LABEL} (allocation pool), 2026-11-01 00:00 to 2026-11-11 00:00 UTC"


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        pytest.param([], [(f"{FROM_THE_11TH}: {TOP_UP}", Decimal("33.33"))], id="without usage"),
        pytest.param(
            [vdc_usage("direct", "500", NOVEMBER.start, november(11)), vdc_usage("direct", "1000.5", november(11))],
            [
                (BEFORE_THE_11TH, Decimal("6.00")),
                (f"{LABEL} (allocation pool), 2026-11-11 00:00 to 2026-12-01 00:00 UTC", Decimal("10.01")),
                (f"{LABEL} (allocation pool), 2026-11-11 00:00 to 2026-12-01 00:00 UTC: {TOP_UP}", Decimal("23.32")),
            ],
            id="below the commitment",
        ),
        pytest.param(
            [vdc_usage("direct", "3500", november(11))],
            [(f"{LABEL} (allocation pool), 2026-11-11 00:00 to 2026-12-01 00:00 UTC", Decimal("35.00"))],
            id="above the commitment",
        ),
    ],
)
def test_a_plan_that_takes_effect_on_the_11th_owes_twenty_thirtieths_of_its_commitment(usage, expected):
    """Direct's own plan (0.010, committing 50.00) takes effect on 11 November: 20 days of 30,
    50.00 x 20/30 = 33.333... owed.
    - Without usage: a top-up of 33.33, dated from the 11th.
    - Below: 500 GHz-h before the 11th are the provider list's (500 x 0.012 = 6.00, no commitment,
      and they do not count towards it); 1000.5 from the 11th x 0.010 = 10.005 -> 10.01; top-up
      33.333... - 10.01 = 23.323... -> 23.32, so the plan bills 10.01 + 23.32 = 33.33.
    - Above: 3500 x 0.010 = 35.00 >= 33.33 (although below the month's 50.00): no top-up."""
    catalog = committed_catalog([vdc_plan("0.010", "50.00", "2026-11-11T00:00:00Z")])
    assert billed(invoices(catalog, usage)["2026-11.acme.direct"]) == expected


def test_a_commitment_replaced_mid_month_by_a_plan_without_one_is_owed_for_its_own_days():
    """Direct's plan committing 50.00 (0.010) is replaced on the 16th by one without a
    commitment (0.009): the first is in force 15 days, 50.00 x 15/30 = 25.00, and had no usage,
    so it bills a top-up of 25.00 alone, scoped to 1-15 November. The second prices the 2000
    GHz-h from the 16th, 2000 x 0.009 = 18.00, and owes nothing more."""
    catalog = committed_catalog(
        [vdc_plan("0.010", "50.00"), vdc_plan("0.009", "0", "2026-11-16T00:00:00Z")],
    )
    direct = invoices(catalog, [vdc_usage("direct", "2000", november(16))])["2026-11.acme.direct"]
    assert billed(direct) == [
        (f"{LABEL}, 2026-11-01 00:00 to 2026-11-16 00:00 UTC: {TOP_UP}", Decimal("25.00")),
        (f"{LABEL} (allocation pool), 2026-11-16 00:00 to 2026-12-01 00:00 UTC", Decimal("18.00")),
    ]
    assert vdc_lines(direct)[0].scopes == (UsageScope("*", NOVEMBER.start, november(16)),)


def test_a_plan_taking_effect_at_noon_leaves_that_day_to_the_plan_before_it():
    """Two versions each committing 50.00 (0.010), the second from 16 November 12:00. At 00:00
    on the 16th the first is in force, so it owns 1-16 November, 16 days: 50.00 x 16/30 =
    26.666... -> 26.67, a top-up alone (it priced no usage). The second owns 17-30 November,
    14 days: 50.00 x 14/30 = 23.333...; it priced 1000 GHz-h from the 16th at noon, 1000 x 0.010
    = 10.00, so its top-up is 23.333... - 10.00 = 13.333... -> 13.33. The month bills
    26.67 + 10.00 + 13.33 = 50.00, the commitment once."""
    catalog = committed_catalog([vdc_plan("0.010", "50.00"), vdc_plan("0.010", "50.00", "2026-11-16T12:00:00Z")])
    direct = invoices(catalog, [vdc_usage("direct", "1000", november(16, 12))])["2026-11.acme.direct"]
    from_noon = f"{LABEL} (allocation pool), 2026-11-16 12:00 to 2026-12-01 00:00 UTC"
    assert billed(direct) == [
        (f"{LABEL}, 2026-11-01 00:00 to 2026-11-17 00:00 UTC: {TOP_UP}", Decimal("26.67")),
        (from_noon, Decimal("10.00")),
        (f"{from_noon}: {TOP_UP}", Decimal("13.33")),
    ]
    assert vdc_lines(direct)[0].scopes == (UsageScope("*", NOVEMBER.start, november(17)),)
    assert sum(line.amount for line in vdc_lines(direct)) == Decimal("50.00")


def test_a_partner_owes_the_provider_list_commitment_once_for_all_its_customers():
    """The provider's list commits 50.00 (0.012). Its partner north is invoiced at that list: its
    customer's 1000 GHz-h, 1000 x 0.012 = 12.00, and a top-up of 50.00 - 12.00 = 38.00. Subtotal
    50.00, 20 % off 10.00, net 40.00, VAT 19 % 7.60, total 47.60.
    The customer itself buys at its own plan (0.011, no commitment): 1000 x 0.011 = 11.00 and no
    top-up. Direct, at the provider's list and without usage, owes the whole 50.00."""
    catalog = committed_catalog([], list_minimum="50.00", resold_plans=[vdc_plan("0.011")])
    built = invoices(catalog, [vdc_usage("resold", "1000", NOVEMBER.start)])
    north = built["2026-11.acme.north"]
    assert billed(north) == [
        (f"{LABEL} (allocation pool)", Decimal("12.00")),
        (f"{LABEL} (allocation pool): {TOP_UP}", Decimal("38.00")),
    ]
    assert (north.subtotal, north.discount, north.net, north.tax_amount, north.total) == (
        Decimal("50.00"),
        Decimal("10.00"),
        Decimal("40.00"),
        Decimal("7.60"),
        Decimal("47.60"),
    )
    assert billed(built["2026-11.north.resold"]) == [(f"{LABEL} (allocation pool)", Decimal("11.00"))]
    assert billed(built["2026-11.acme.direct"]) == [(f"{LABEL}: {TOP_UP}", Decimal("50.00"))]


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        pytest.param([], [(f"{FROM_THE_11TH}: {TOP_UP}", Decimal(3333))], id="without usage"),
        pytest.param(
            [vdc_usage("direct", "1000.5", november(11))],
            [
                (f"{LABEL} (allocation pool), 2026-11-11 00:00 to 2026-12-01 00:00 UTC", Decimal(1501)),
                (f"{LABEL} (allocation pool), 2026-11-11 00:00 to 2026-12-01 00:00 UTC: {TOP_UP}", Decimal(1832)),
            ],
            id="below the commitment",
        ),
    ],
)
def test_a_prorated_commitment_in_yen_is_rounded_once_to_the_yen(usage, expected):
    """In JPY (no minor unit), a plan of 1.5 yen per GHz-h committing 5000 takes effect on the
    11th: 5000 x 20/30 = 3333.333... owed.
    - Without usage: top-up 3333.
    - 1000.5 GHz-h x 1.5 = 1500.75 -> 1501; top-up 3333.333... - 1501 = 1832.333... -> 1832;
      together 3333."""
    catalog = committed_catalog([vdc_plan("1.5", "5000", "2026-11-11T00:00:00Z")], currency="JPY")
    assert billed(invoices(catalog, usage)["2026-11.acme.direct"]) == expected


def test_a_partners_usage_so_far_leaves_the_commitment_to_the_close():
    """The provider's list commits 100.00 a month on vDC CPU. North's customer used 1,000 GHz-hours
    so far: 1,000 x 0.012 = 12.00 at the list, the only line of its usage so far (no top-up to
    100.00 before the month is over); the close's invoice tops it up by 100.00 - 12.00 = 88.00.
    So far: 12.00, 20 % off = 2.40, net 9.60, VAT 19 % = 1.824 -> 1.82, total 11.42."""
    catalog = committed_catalog([], list_minimum="100")
    usage = [vdc_usage("resold", "1000", november(1))]
    so_far = partner_usage_so_far(catalog, NOVEMBER, "north", usage)
    assert (so_far.invoice_id, billed(so_far)) == (
        "2026-11.acme.north",
        [(LABEL + " (allocation pool)", Decimal("12.00"))],
    )
    assert (so_far.net, so_far.tax_amount, so_far.total) == (Decimal("9.60"), Decimal("1.82"), Decimal("11.42"))
    closed = invoices(catalog, usage)["2026-11.acme.north"]
    assert [amount for _, amount in billed(closed)] == [Decimal("12.00"), Decimal("88.00")]


def test_a_commitment_on_an_sku_without_a_product_reads_as_service_usage_not_as_its_id():
    """Direct commits 50.00 a month on sku ``dbaas_instance_hours``, which the catalog lists no
    product for, and used none: one top-up line of 50.00 x 30/30 = 50.00, named for people."""
    plan = {"meter": "xaas_units", "dimension": "dbaas_instance_hours", "model": "per_unit", "unit_price": "0.15"}
    catalog = committed_catalog([{**plan, "minimum_amount": "50.00", "effective_from": FROM}])
    (line,) = invoices(catalog, [])["2026-11.acme.direct"].lines
    assert (line.description, line.amount) == (f"Service usage (dbaas instance hours): {TOP_UP}", Decimal("50.00"))
