"""One pricing rule: the stream rates every usage row with the plan the invoice bills it by.

Random catalogs (a provider list, a partner list, a customer's own plans, each with plans for
some disk tiers or all of them, some dated in the future) and random instants: the unit price
the stream rates a sample at is the price of the plan ``Catalog.find_plan`` chooses, and for a
per-unit plan the invoice line is the rated amount rounded to the cent.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from billing.catalog import Catalog
from billing.invoices import UsageTotal, build_invoices
from billing.money import round_money
from billing.periods import Period
from billing.pricing import price_book
from pipeline.metering import event_columns, measure
from pipeline.rating import rate_quantities
from schemas.events import encode_batch
from schemas.intake import split_message
from tests.factories import vm_sample

TIERS = ("*", "ssd", "hdd")
DATES = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 11, 15, tzinfo=UTC))

plans = st.lists(
    st.fixed_dictionaries(
        {
            "meter": st.just("disk_gib_hours"),
            "model": st.just("per_unit"),
            "dimension": st.sampled_from(TIERS),
            "effective_from": st.sampled_from(DATES).map(lambda d: d.isoformat()),
            "unit_price": st.integers(1, 999).map(lambda n: str(Decimal(n).scaleb(-4))),
        }
    ),
    max_size=4,
    unique_by=lambda plan: (plan["dimension"], plan["effective_from"]),
)


BASE = {"meter": "disk_gib_hours", "model": "per_unit", "effective_from": DATES[0].isoformat(), "unit_price": "1"}
"""The provider's list price for any tier from the first date: a partner buys every tier at some
provider price (without one, closing the period says which price is missing)."""


def catalog(provider_plans: list[Any], partner_plans: list[Any], own_plans: list[Any], resold: bool) -> Catalog:
    clashing = {("*", BASE["effective_from"])}
    provider_plans = [BASE] + [p for p in provider_plans if (p["dimension"], p["effective_from"]) not in clashing]
    return Catalog.model_validate(
        {
            "currency": "EUR",
            "provider": {"id": "acme", "name": "Acme", "invoice_prefix": "ACME"},
            "partners": [{"id": "north", "name": "North", "invoice_prefix": "NTH"}],
            "tax_rates": [{"jurisdiction": "FR", "rate_percent": "20"}],
            "price_lists": [
                {"seller_id": "acme", "plans": provider_plans},
                {"seller_id": "north", "plans": partner_plans},
            ],
            "customers": [
                {"id": "c1", "name": "C1", "partner_id": "north" if resold else None, "plans": own_plans},
                {"id": "c2", "name": "C2"},
            ],
        }
    )


@settings(max_examples=300, deadline=None)
@given(
    provider_plans=plans,
    partner_plans=plans,
    own_plans=plans,
    resold=st.booleans(),
    customer=st.sampled_from(["c1", "c2"]),
    tier=st.sampled_from(["ssd", "hdd", "nvme"]),
    hours=st.integers(0, 364 * 24),
    size_gib=st.integers(1, 5000),
)
def test_the_stream_rates_with_the_plan_the_invoice_bills(
    provider_plans, partner_plans, own_plans, resold, customer, tier, hours, size_gib
):
    """A stopped VM's disk of ``size_gib`` over one hour is ``size_gib`` GiB-hours exactly."""
    chosen = catalog(provider_plans, partner_plans, own_plans, resold)
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=hours)
    sample = vm_sample(
        "vm-1",
        customer,
        at=start + timedelta(hours=1),
        interval_s=3600,
        power_state="stopped",
        net_tx_bytes=0,
        disks=[{"tier": tier, "size_gib": size_gib}],
    )
    book = price_book(chosen)
    rated, unpriced = rate_quantities(measure(event_columns(split_message(encode_batch([sample])))), book)
    plan = chosen.find_plan(chosen.customers[0 if customer == "c1" else 1], "disk_gib_hours", tier, start)
    assert plan is not None and not unpriced
    assert rated["unit_price"].to_list() == [plan.unit_price_for_rating]

    period = Period.containing(start.date())
    usage = UsageTotal(customer, "disk_gib_hours", tier, "GiB-hour", Fraction(size_gib), period.start, period.end)
    changes = sorted({d for d in DATES if period.start < d < period.end})
    if changes:  # the period is cut where a price changed: the sample lies in one part
        edges = [period.start, *changes, period.end]
        part = max(i for i, edge in enumerate(edges[:-1]) if edge <= start)
        usage = UsageTotal(
            customer, "disk_gib_hours", tier, "GiB-hour", Fraction(size_gib), edges[part], edges[part + 1]
        )
    invoice = next(i for i in build_invoices(chosen, period, [usage]) if i.buyer_id == customer)
    (line,) = [line for line in invoice.lines if line.meter == "disk_gib_hours"]
    assert line.amount == round_money(rated["amount"][0], "EUR")
