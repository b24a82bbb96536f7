"""Which plan prices a customer's usage: one rule, for the stream's rater and for the invoice.

``Catalog.find_plan`` is the rule (a customer's own plans, then its seller's list, then the
provider's list; inside each, an exact dimension before the wildcard; the latest version in
force at the instant). The rater cannot call it per row, so ``price_book`` evaluates the rule
at every instant where its answer can change and hands the stream the result as a table of
effective-dated unit prices. Both therefore price the same usage with the same plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from billing.catalog import Catalog, Customer
from billing.periods import Period
from billing.price_plans import ANY_DIMENSION, PricePlan
from schemas.meters import Meter

ANY_CUSTOMER = "*"


@dataclass(frozen=True)
class Price:
    """A unit price in force from ``effective_from`` until the next entry of the same key."""

    meter: Meter
    unit_price: Decimal
    effective_from: datetime
    dimension: str = ANY_DIMENSION
    customer_id: str = ANY_CUSTOMER


@dataclass(frozen=True, eq=False)
class PriceBook:
    """The stream's prices, and the meter of each declared XaaS sku. Compared by identity: a
    worker caches what it derives from a book."""

    currency: str
    prices: tuple[Price, ...]
    currencies: Mapping[str, str] = field(default_factory=dict)
    """The customers rated in another currency than ``currency``, and theirs: each has prices of
    its own (from the lists in its currency), and never falls back to the ``*`` key's."""
    xaas_meters: Mapping[str, Meter] = field(default_factory=dict)
    xaas_units: Mapping[str, str] = field(default_factory=dict)
    """The unit each XaaS sku's reports must name, where the catalog declares one."""


def price_book(catalog: Catalog) -> PriceBook:
    """Per-unit prices for the rater, as ``Catalog.find_plan`` decides them.

    Customers that buy at the provider's list with no plans of their own share the ``*`` key;
    every other customer gets its own, fully resolved entries, so the rater only has to pick an
    exact dimension over the wildcard.
    """
    prices = _resolved(catalog, None, ANY_CUSTOMER)
    currencies = {c.id: catalog.currency_of(c.id) for c in catalog.customers}
    foreign = {customer_id: currency for customer_id, currency in currencies.items() if currency != catalog.currency}
    for customer in catalog.customers:
        if customer.plans or customer.partner_id or customer.id in foreign:
            prices += _resolved(catalog, customer, customer.id)
    return PriceBook(
        currency=catalog.currency,
        prices=tuple(prices),
        currencies=foreign,
        xaas_meters=catalog.xaas_meters,
        xaas_units=catalog.xaas_units,
    )


def _resolved(catalog: Catalog, customer: Customer | None, key: str) -> list[Price]:
    """The rule's answer for each meter and named dimension, at every instant it may change."""
    candidates = catalog.candidate_plans(customer)
    prices = []
    for meter in sorted({plan.meter for plan in candidates}):
        plans = [plan for plan in candidates if plan.meter == meter]
        changes = sorted({plan.effective_from for plan in plans})
        for dimension in sorted({plan.dimension for plan in plans} | {ANY_DIMENSION}):
            previous: PricePlan | None = None
            for at in changes:
                plan = catalog.find_plan(customer, meter, dimension, at)
                if plan is not None and plan is not previous:
                    prices.append(Price(meter, plan.unit_price_for_rating, at, dimension, key))
                previous = plan
    return prices


@dataclass(frozen=True)
class PriceChange:
    """A plan for ``meter`` and ``dimension`` (``*``: all) takes effect at ``at``."""

    meter: str
    dimension: str
    at: datetime

    def reprices(self, meter: str, dimension: str) -> bool:
        """Whether usage of ``meter`` and ``dimension`` may be priced differently from ``at`` on."""
        return meter == self.meter and self.dimension in (dimension, ANY_DIMENSION)


def price_changes(catalog: Catalog, period: Period) -> list[PriceChange]:
    """Where inside the period some plan takes effect: the usage it may reprice is totalled on
    either side of it. Only that usage: another meter's change must not cut a level's period."""
    return sorted(
        {
            PriceChange(plan.meter.value, plan.dimension, plan.effective_from)
            for plan in catalog.all_plans
            if period.start < plan.effective_from < period.end
        },
        key=lambda change: (change.at, change.meter, change.dimension),
    )
