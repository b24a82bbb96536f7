"""A period's usage as the close prices it: exact totals per customer, meter and dimension.

A level (an XaaS peak or latest figure) is aggregated per resource first, then summed over the
customer's resources, as ``storage.usage_read.RESOURCE_TOTAL`` says. The usage comes
from the rollups, cut at every price change that falls inside an hour.

Totals are summed in each meter's base unit (``base_quantity``, a sum of exact figures) and
divided once, here, into a ``Fraction``; they are cut at every instant a price changed in the
period, so each part is priced by the plan in force then.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Collection
from datetime import datetime
from fractions import Fraction
from typing import Any

from clickhouse_connect.driver.client import Client

from billing.invoices import UsageTotal
from billing.periods import Period
from billing.pricing import PriceChange
from storage.usage_read import UsageRead, customer_totals, usage_rows


class PeriodUsage:
    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self._database = database
        self._lock = threading.Lock()

    def totals(
        self,
        period: Period,
        price_changes: list[PriceChange],
        cutoff: datetime | None,
        customers: Collection[str] | None = None,
    ) -> list[UsageTotal]:
        """Usage in the period of every event first stored by ``cutoff`` (None: stored so far),
        of ``customers`` (None: of everyone), each event once, in parts between the price
        changes that may reprice it."""
        parameters: dict[str, Any] = {
            "change_meters": [change.meter for change in price_changes],
            "change_dimensions": [change.dimension for change in price_changes],
            "changes": [change.at for change in price_changes],
        }
        whose = "1"
        if customers is not None:
            whose, parameters["customers"] = "customer_id IN {customers:Array(String)}", sorted(customers)
        read = UsageRead(
            period.start,
            period.end,
            whose,
            parameters,
            whose,
            cuts=tuple(change.at for change in price_changes),
            stored_by=cutoff,
        )
        rows_query, parameters = usage_rows(self._database, read)
        # the price changes of a row's meter and dimension at or before it: the part it is priced in
        price_part = (
            "arrayCount((m, d, at) -> m = meter AND (d = dimension OR d = '*') AND at <= t, "
            "{change_meters:Array(String)}, {change_dimensions:Array(String)}, "
            "{changes:Array(DateTime64(3, 'UTC'))})"
        )
        query = customer_totals(rows_query, price_part)
        with self._lock:
            rows = self._client.query(query, parameters=parameters).result_rows
        exact: dict[tuple[str, str, str, str, int], Fraction] = defaultdict(Fraction)
        for customer, meter, dimension, unit, divisor, part, base in rows:
            exact[(customer, meter, dimension, unit, part)] += Fraction(base) / divisor
        totals = []
        for (customer, meter, dimension, unit, part), quantity in exact.items():
            cuts = [change.at for change in price_changes if change.reprices(meter, dimension)]
            bounds = [period.start, *cuts, period.end]
            totals.append(UsageTotal(customer, meter, dimension, unit, quantity, bounds[part], bounds[part + 1]))
        return totals
