"""The figures of a customer's consumption page and credit burn-down, read through the API's
dashboard routes with the caller narrowed to that customer."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pyarrow as pa
from fastapi import Request

from api import routes_dashboards
from api.access.guard import Caller
from api.portal.charts import BarChart
from api.portal.guard import Visitor
from api.services import services_of
from billing.catalog import Catalog, Customer
from billing.money import round_money, shown_quantity
from schemas.meters import Meter
from storage.dashboards import CostGroup, ResourceCost
from storage.usage_queries import Granularity

TOP_RESOURCES = 10
METERED_PRODUCTS = {"vm": "Virtual machines", "vdc": "Virtual datacenters"}
"""What the stream names the usage of VMs and vDCs (``pipeline/metering.py``); any other product
is an XaaS sku, named by the catalog."""


@dataclass(frozen=True)
class Named:
    name: str
    currency: str
    amount: Decimal
    quantity: Decimal | None = None
    unit: str | None = None


@dataclass(frozen=True)
class MonthSoFar:
    month: str
    to_date: list[routes_dashboards.MonthToDateOut]
    """One per currency the customer's usage is priced in (none without usage)."""
    by_product: list[Named]
    by_meter: list[Named]
    by_resource: list[Named]
    hourly: BarChart
    hourly_points: list[tuple[datetime, str, Decimal]]


def month_so_far(request: Request, caller: Caller, customer_id: str, catalog: Catalog, now: datetime) -> MonthSoFar:
    """This month's cost to date and forecast, by product, meter and resource, and by the hour.

    The cost to date, products, meters and resources are summed here from one read of each
    resource's cost of each meter (four reads of the month took as long each), rounded as the
    cost reports round."""
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    costs = services_of(request).dashboards.by_resource(caller.scope, start, now)
    to_date: dict[tuple[str, str], Fraction] = defaultdict(Fraction)
    for cost in costs:
        to_date[(customer_id, cost.currency)] += cost.amount
    shown = {key: shown_quantity(amount) for key, amount in to_date.items()}
    month = routes_dashboards.month_to_date_report(request, caller, now, None, shown)
    hours = routes_dashboards.costs(request, caller, None, None, Granularity.HOUR, CostGroup.CUSTOMER, None)
    return MonthSoFar(
        month=month.month,
        to_date=month.customers,
        by_product=_ranked(costs, lambda cost: product_name(catalog, cost.product)),
        by_meter=_by_meter(costs),
        by_resource=_ranked(costs, lambda cost: cost.resource_id)[:TOP_RESOURCES],
        hourly=BarChart.of([(point.period_start, point.amount) for point in hours.series]),
        hourly_points=[(point.period_start, point.currency, point.amount) for point in hours.series],
    )


def _ranked(costs: list[ResourceCost], name_of: Callable[[ResourceCost], str]) -> list[Named]:
    """Cost per name and currency, highest first."""
    amounts: dict[tuple[str, str], Fraction] = defaultdict(Fraction)
    for cost in costs:
        amounts[(name_of(cost), cost.currency)] += cost.amount
    ranked = sorted(amounts.items(), key=lambda item: item[1], reverse=True)
    return [Named(name, currency, shown_money(amount, currency)) for (name, currency), amount in ranked]


def _by_meter(costs: list[ResourceCost]) -> list[Named]:
    """A meter's cost, with its quantity where one unit counts it: an XaaS meter adds up skus of
    different units (GB-hours and instance-hours), whose products the table by product names."""
    totals: dict[tuple[str, str, str], tuple[Fraction, Fraction]] = {}
    for cost in costs:
        meter = _meter(cost.meter)
        key = (cost.meter, cost.currency, "" if meter is not None and meter.is_xaas else cost.unit)
        quantity, amount = totals.get(key, (Fraction(0), Fraction(0)))
        totals[key] = (quantity + cost.quantity, amount + cost.amount)
    named = []
    for (name, currency, unit), (quantity, amount) in sorted(totals.items(), key=lambda item: item[1][1], reverse=True):
        money, known = shown_money(amount, currency), _meter(name)
        if known is None:
            named.append(Named(name, currency, money))
        elif known.is_xaas:
            named.append(Named(f"Services ({known.unit})", currency, money))
        else:
            named.append(Named(known.label, currency, money, shown_quantity(quantity), unit))
    return named


def _meter(name: str) -> Meter | None:
    try:
        return Meter(name)
    except ValueError:
        return None


def shown_money(amount: Fraction, currency: str) -> Decimal:
    """An exact amount as the cost reports show it: to 12 places in the engine, then to the minor unit."""
    return round_money(shown_quantity(amount), currency)


def first_rows(rows: pa.Table, count: int) -> list[dict[str, Any]]:
    """A usage report's first ``count`` rows in time, resource, meter and dimension order, as
    dicts for a page (a month by hour and resource is hundreds of thousands: sorted as Arrow)."""
    keys = [name for name in ("period_start", "resource_id", "meter", "dimension") if name in rows.column_names]
    ordered = rows.sort_by([(name, "ascending") for name in keys])
    return list(ordered.slice(0, count).to_pylist())


def burn_down(request: Request, visitor: Visitor, holder_id: str) -> BarChart | None:
    """A customer's balance at the end of each day this month (a partner's own credit: none)."""
    if not isinstance(visitor.catalog.party(holder_id), Customer):
        return None
    report = routes_dashboards.credit(request, visitor.of_customer(holder_id), None, None, Granularity.DAY)
    # a point is the balance at a day's end (the next midnight), or now: labelled with its day
    ends = [(point.at - timedelta(microseconds=1), point.balance) for point in report.series]
    return BarChart.of(ends, shown="{:,f}", time_format="%d %b")


def product_name(catalog: Catalog, product: str) -> str:
    """A product for people: Virtual machines, or the catalog's name of an XaaS sku."""
    return METERED_PRODUCTS.get(product) or catalog.product_name(product)
