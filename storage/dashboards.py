"""Read models for cost dashboards: cost and usage over time across customers, the month to date
with a forecast, and how fresh the data is. Each reads the rollups through the caller's scope
(``storage.usage_read``): a partner sees its customers, a customer itself.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import Any

from billing.burn_rate import RecentCost, forecast, rate_of, recent_window, shown_rate
from billing.catalog import Catalog
from billing.money import round_money, shown_quantity
from billing.periods import check_buckets, check_window
from billing.scope import Scope
from storage.connection import ClientPool
from storage.tables import STORED_MESSAGES
from storage.usage_queries import Granularity
from storage.usage_read import AMOUNT, RESOURCE_TOTAL, UsageRead, usage_rows

INGEST_WINDOW_S = 300
OTHER = "(other)"
ROUNDED_SUM = "toDecimal128(round(sum(amount), 12), 12)"
"""Amounts leave the engine exact to 12 places (they are summed exactly there, then rounded once);
the API shows them to the cent."""


class CostGroup(StrEnum):
    CUSTOMER = "customer"
    PARTNER = "partner"
    PRODUCT = "product"
    METER = "meter"


@dataclass(frozen=True)
class CostWindow:
    start: datetime
    end: datetime
    granularity: Granularity

    def __post_init__(self) -> None:
        check_window(self.start, self.end)
        check_buckets(self.start, self.end, self.granularity.value)


@dataclass(frozen=True)
class CostPoint:
    period_start: datetime
    group: str
    currency: str
    amount: Decimal
    quantity: Decimal | None = None
    unit: str | None = None


@dataclass(frozen=True)
class CostTotal:
    group: str
    currency: str
    amount: Decimal


@dataclass(frozen=True)
class ResourceCost:
    """One resource's exact cost and quantity of one meter over a window."""

    resource_id: str
    product: str
    meter: str
    unit: str
    currency: str
    quantity: Fraction
    amount: Fraction


@dataclass(frozen=True)
class MonthToDate:
    customer_id: str
    currency: str
    to_date: Decimal
    run_rate_per_hour: Decimal
    forecast: Decimal


@dataclass(frozen=True)
class Ingest:
    newest_usage: datetime | None
    last_stored: datetime | None
    freshness_s: float | None
    events_per_s: Decimal


class Dashboards:
    def __init__(self, pool: ClientPool, database: str) -> None:
        self._pool = pool
        self._database = database

    def costs(
        self, scope: Scope, catalog: Catalog, window: CostWindow, group: CostGroup, top: int | None
    ) -> tuple[list[CostPoint], list[CostTotal]]:
        """Cost per bucket and group, the ``top`` groups by cost over the window and the rest as
        ``(other)``; with ``group=meter``, each meter's quantity as well (a level per resource
        first). Totals are per group over the window, highest first."""
        granularity = window.granularity
        read = _scoped(
            scope,
            window.start,
            window.end,
            by_day=granularity is not Granularity.HOUR,
            by_month=granularity is Granularity.MONTH,
        )
        rows_query, parameters = usage_rows(self._database, read)
        bucket = f"toDateTime({window.granularity.truncate_sql}(t), 'UTC')"
        if group is CostGroup.METER:
            query = (
                f"SELECT period_start, meter, currency, {ROUNDED_SUM}, unit, base_divisor, sum(base) FROM ("
                f"SELECT {bucket} AS period_start, customer_id, resource_id, meter, dimension, unit, currency, "
                f"base_divisor, {RESOURCE_TOTAL} AS base, {AMOUNT} AS amount FROM ({rows_query}) "
                "GROUP BY period_start, customer_id, resource_id, meter, dimension, unit, currency, base_divisor) "
                "GROUP BY period_start, meter, currency, unit, base_divisor"
            )
        else:
            key = {
                CostGroup.CUSTOMER: "customer_id",
                CostGroup.PRODUCT: "product",
                CostGroup.PARTNER: "transform(customer_id, {sold_by_customers:Array(String)}, "
                "{sold_by_partners:Array(String)}, {provider:String})",
            }[group]
            parameters |= _sellers(catalog)
            query = (
                f"SELECT period_start, grp, currency, {ROUNDED_SUM} FROM (SELECT {bucket} AS period_start, "
                f"{key} AS grp, currency, {AMOUNT} AS amount FROM ({rows_query}) "
                "GROUP BY period_start, grp, currency, base_divisor) "
                "GROUP BY period_start, grp, currency"
            )
        points = _points(self._pool.query(query, parameters).result_rows, with_quantity=group is CostGroup.METER)
        return _top(points, top)

    def by_resource(self, scope: Scope, start: datetime, end: datetime) -> list[ResourceCost]:
        """Each resource's cost and quantity of each meter (a level per dimension first) in
        ``[start, end)``, exact: one read from which a page sums its products, meters and top
        resources, each rounded once as the cost reports round them."""
        rows_query, parameters = usage_rows(self._database, _scoped(scope, start, end, by_day=True))
        query = (
            f"SELECT resource_id, product, meter, unit, currency, base_divisor, {RESOURCE_TOTAL}, sum(amount_base) "
            f"FROM ({rows_query}) GROUP BY resource_id, product, meter, dimension, unit, currency, base_divisor"
        )
        return [
            ResourceCost(resource, product, meter, unit, currency, Fraction(base) / divisor, Fraction(amount) / divisor)
            for resource, product, meter, unit, currency, divisor, base, amount in self._pool.query(
                query, parameters
            ).result_rows
        ]

    def month_to_date(
        self, scope: Scope, now: datetime, top: int | None, to_date: dict[tuple[str, str], Decimal] | None = None
    ) -> list[MonthToDate]:
        """Each customer's cost this month so far (``to_date`` per customer and currency, to 12
        places, if the caller summed it already), and where it ends if its recent run rate
        (``billing.burn_rate``) holds until the month's last instant."""
        month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        month_end = month_start + timedelta(days=calendar.monthrange(now.year, now.month)[1])
        if to_date is None:
            to_date = self._amounts(_scoped(scope, month_start, now, by_day=True))
        recent = self.recent_costs(scope, now)
        figures = []
        for customer, currency in sorted(set(to_date) | set(recent)):
            rate = rate_of(recent, (customer, currency))
            so_far = to_date.get((customer, currency), Decimal(0))
            figures.append(
                MonthToDate(
                    customer,
                    currency,
                    so_far,
                    shown_rate(rate),
                    round_money(forecast(so_far, rate, now, month_end), currency),
                )
            )
        figures.sort(key=lambda figure: (-figure.to_date, figure.customer_id))
        return figures[:top] if top else figures

    def recent_costs(self, scope: Scope, now: datetime) -> dict[tuple[str, str], RecentCost]:
        """Per customer and currency: the cost of the recent complete hours and the first of them
        with usage, what ``billing.burn_rate`` measures a rate from."""
        start, end = recent_window(now)
        rows_query, parameters = usage_rows(self._database, _scoped(scope, start, end, by_day=False))
        query = (
            f"SELECT customer_id, currency, min(first_hour), {ROUNDED_SUM} FROM (SELECT customer_id, currency, "
            f"min(t) AS first_hour, {AMOUNT} AS amount FROM ({rows_query}) GROUP BY customer_id, currency, "
            "base_divisor) GROUP BY customer_id, currency"
        )
        return {
            (customer, currency): RecentCost(cost, first_hour.replace(tzinfo=UTC), end)
            for customer, currency, first_hour, cost in self._pool.query(query, parameters).result_rows
        }

    def costs_since(self, customers: set[str], start: datetime, now: datetime) -> dict[tuple[str, str], Decimal]:
        """The cost of each of ``customers`` in ``[start, now)``, per currency."""
        return self._amounts(_scoped(Scope(customers=frozenset(customers)), start, now, by_day=True))

    def _amounts(self, read: UsageRead) -> dict[tuple[str, str], Decimal]:
        rows_query, parameters = usage_rows(self._database, read)
        query = (
            f"SELECT customer_id, currency, {ROUNDED_SUM} FROM (SELECT customer_id, currency, {AMOUNT} AS amount "
            f"FROM ({rows_query}) GROUP BY customer_id, currency, base_divisor) GROUP BY customer_id, currency"
        )
        return {(c, currency): amount for c, currency, amount in self._pool.query(query, parameters).result_rows}

    def ingest(self, now: datetime) -> Ingest:
        """When the sink last stored a message and the newest usage in those of the last day,
        and the events stored per second over the last ``INGEST_WINDOW_S`` seconds."""
        last_stored, newest, recent = self._pool.query(
            f"SELECT max(stored_at), max(last_usage), sumIf(events, stored_at > {{recent:DateTime64(3, 'UTC')}}) "
            f"FROM {self._database}.{STORED_MESSAGES} WHERE stored_at > {{day:DateTime64(3, 'UTC')}}",
            {"day": now - timedelta(days=1), "recent": now - timedelta(seconds=INGEST_WINDOW_S)},
        ).result_rows[0]
        stored_at = last_stored.replace(tzinfo=UTC) if last_stored and last_stored.year > 1970 else None
        return Ingest(
            newest_usage=newest.replace(tzinfo=UTC) if newest and newest.year > 1970 else None,
            last_stored=stored_at,
            freshness_s=round((now - stored_at).total_seconds(), 3) if stored_at else None,
            events_per_s=(Decimal(int(recent or 0)) / INGEST_WINDOW_S).quantize(Decimal("0.001")),
        )


def _scoped(scope: Scope, start: datetime, end: datetime, *, by_day: bool, by_month: bool = False) -> UsageRead:
    """Usage in ``[start, end)`` of the customers and meters ``scope`` sees."""
    customers, meters, parameters = "1", "1", {}
    if scope.customers is not None:
        customers = "customer_id IN {customers:Array(String)}"
        parameters["customers"] = sorted(scope.customers)
    if scope.meters is not None:
        meters = "meter IN {meters:Array(String)}"
        parameters["meters"] = sorted(scope.meters)
    return UsageRead(start, end, f"{customers} AND {meters}", parameters, customers, by_day=by_day, by_month=by_month)


def _sellers(catalog: Catalog) -> dict[str, Any]:
    """Who sold each customer that a partner sold (the others: the provider)."""
    pairs = sorted(
        (customer, partner) for partner, customers in catalog.customers_of_partner.items() for customer in customers
    )
    return {
        "sold_by_customers": [customer for customer, _ in pairs],
        "sold_by_partners": [partner for _, partner in pairs],
        "provider": catalog.provider.id,
    }


def _points(rows: Sequence[Sequence[Any]], *, with_quantity: bool) -> list[CostPoint]:
    if not with_quantity:
        return [
            CostPoint(period.replace(tzinfo=UTC), group, currency, amount) for period, group, currency, amount in rows
        ]
    amounts: dict[tuple[datetime, str, str, str], Decimal] = defaultdict(Decimal)
    quantities: dict[tuple[datetime, str, str, str], Fraction] = defaultdict(Fraction)
    for period, meter, currency, amount, unit, divisor, base in rows:
        key = (period.replace(tzinfo=UTC), meter, currency, unit)
        amounts[key] += amount
        quantities[key] += Fraction(base) / divisor
    return [
        CostPoint(period, meter, currency, amounts[key], shown_quantity(quantities[key]), unit)
        for key in sorted(amounts)
        for period, meter, currency, unit in [key]
    ]


def _top(points: list[CostPoint], top: int | None) -> tuple[list[CostPoint], list[CostTotal]]:
    totals: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for point in points:
        totals[(point.group, point.currency)] += point.amount
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))
    if top is None or len(ranked) <= top:
        kept = points
        shown = ranked
    else:
        leaders = {key for key, _ in ranked[:top]}
        kept = [point for point in points if (point.group, point.currency) in leaders]
        others: dict[tuple[datetime, str], Decimal] = defaultdict(Decimal)
        for point in points:
            if (point.group, point.currency) not in leaders:
                others[(point.period_start, point.currency)] += point.amount
        kept += [CostPoint(period, OTHER, currency, amount) for (period, currency), amount in sorted(others.items())]
        rest: dict[str, Decimal] = defaultdict(Decimal)
        for (_, currency), amount in ranked[top:]:
            rest[currency] += amount
        shown = [*ranked[:top], *(((OTHER, currency), amount) for currency, amount in sorted(rest.items()))]
    kept.sort(key=lambda point: (point.period_start, point.group, point.currency))
    return kept, [CostTotal(group, currency, amount) for (group, currency), amount in shown]
