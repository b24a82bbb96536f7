"""The figures of a customer's consumption page and credit burn-down, read through the API's
dashboard routes with the caller narrowed to that customer."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
from fastapi import Request

from api import routes_dashboards
from api.access.guard import Caller
from api.portal.charts import BarChart
from api.portal.guard import Visitor
from api.services import services_of
from billing.catalog import Catalog, Customer
from billing.money import round_money
from schemas.meters import Meter
from storage.dashboards import CostGroup
from storage.usage_queries import Granularity, GroupBy, UsageWindow

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


def month_so_far(request: Request, caller: Caller, catalog: Catalog, now: datetime) -> MonthSoFar:
    """This month's cost to date and forecast, by product, meter and resource, and by the hour."""
    costs = routes_dashboards.costs
    month = routes_dashboards.month_to_date(request, caller, None)
    products = costs(request, caller, None, None, Granularity.MONTH, CostGroup.PRODUCT, None)
    meters = costs(request, caller, None, None, Granularity.MONTH, CostGroup.METER, None)
    hours = costs(request, caller, None, None, Granularity.HOUR, CostGroup.CUSTOMER, None)
    return MonthSoFar(
        month=month.month,
        to_date=month.customers,
        by_product=[Named(product_name(catalog, t.group), t.currency, t.amount) for t in products.totals],
        by_meter=[_by_meter(point) for point in sorted(meters.series, key=lambda point: point.amount, reverse=True)],
        by_resource=_top_resources(request, caller, now),
        hourly=BarChart.of([(point.period_start, point.amount) for point in hours.series]),
        hourly_points=[(point.period_start, point.currency, point.amount) for point in hours.series],
    )


def _top_resources(request: Request, caller: Caller, now: datetime) -> list[Named]:
    customer_id = next(iter(caller.scope.customers or ()))
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    window = UsageWindow(customer_id, start, now)
    rows = services_of(request).queries.usage(caller.scope, window, Granularity.MONTH, GroupBy.RESOURCE).to_pylist()
    amounts: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for row in rows:
        amounts[(row["resource_id"], row["currency"])] += row["amount"]
    ranked = sorted(amounts.items(), key=lambda item: item[1], reverse=True)[:TOP_RESOURCES]
    return [Named(resource, currency, round_money(amount, currency)) for (resource, currency), amount in ranked]


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


def _by_meter(point: routes_dashboards.CostPointOut) -> Named:
    """A meter's cost, with its quantity where one unit counts it: an XaaS meter adds up skus of
    different units (GB-hours and instance-hours), whose products the table by product names."""
    try:
        meter = Meter(point.group)
    except ValueError:
        return Named(point.group, point.currency, point.amount)
    if meter.is_xaas:
        return Named(f"Services ({meter.unit})", point.currency, point.amount)
    return Named(meter.label, point.currency, point.amount, point.quantity, point.unit)


def product_name(catalog: Catalog, product: str) -> str:
    """A product for people: Virtual machines, or the catalog's name of an XaaS sku."""
    return METERED_PRODUCTS.get(product) or catalog.product_name(product)
