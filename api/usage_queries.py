"""Usage read models over ClickHouse: what the usage endpoints show, to the cent.

Every query reads rated usage through a view that reads stored events with ``FINAL``, so that
an event written twice counts once.
"""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import Any

from clickhouse_connect.driver.client import Client

from billing.invoices import UsageScope
from billing.money import shown_quantity
from billing.periods import check_storable
from billing.scope import Scope
from meterline.exceptions import InvalidQuery, UnknownCustomer
from schemas.clickhouse import RATED_USAGE, RAW_MESSAGES, USAGE_EVENTS, USAGE_WITHIN, of_one_resource, stored_by
from schemas.events import LONGEST_INTERVAL_S

CSV_CHUNK_BYTES = 64 * 1024
CSV_COLUMNS = [
    "hour",
    "customer_id",
    "resource_id",
    "product",
    "meter",
    "dimension",
    "unit",
    "currency",
    "quantity",
    "amount",
]


class Granularity(StrEnum):
    HOUR = "hour"
    DAY = "day"
    MONTH = "month"

    @property
    def truncate_sql(self) -> str:
        return {"hour": "toStartOfHour", "day": "toStartOfDay", "month": "toStartOfMonth"}[self.value]


class GroupBy(StrEnum):
    RESOURCE = "resource"
    METER = "meter"
    PRODUCT = "product"

    @property
    def columns(self) -> tuple[str, ...]:
        """Quantities of different meters never add up, so every grouping keeps the meter."""
        leading = {"resource": ("resource_id", "product"), "meter": (), "product": ("product",)}[self.value]
        return (*leading, "meter", "dimension", "unit")


@dataclass(frozen=True)
class UsageWindow:
    customer_id: str
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for name, value in (("from", self.start), ("to", self.end)):
            if value.tzinfo is None or value.utcoffset() is None:
                raise InvalidQuery(f"'{name}' must carry a UTC offset, e.g. 2026-11-01T00:00:00Z")
        if self.start >= self.end:
            raise InvalidQuery("'from' must be before 'to'")
        check_storable("'from'", self.start)
        check_storable("'to'", self.end)

    def parameters(self) -> dict[str, Any]:
        return {"customer": self.customer_id, "start": self.start, "end": self.end}


WHERE = "customer_id = {customer:String} AND " + USAGE_WITHIN


def _scoped(scope: Scope, window: UsageWindow) -> tuple[str, dict[str, Any]]:
    """The window's condition for a caller: a customer it does not see does not exist for it,
    and a read token limited to some meters shows only theirs."""
    if not scope.sees_customer(window.customer_id):
        raise UnknownCustomer(f"no customer {window.customer_id!r}")
    if scope.meters is None:
        return WHERE, window.parameters()
    return f"{WHERE} AND meter IN {{meters:Array(String)}}", {**window.parameters(), "meters": sorted(scope.meters)}


class UsageQueries:
    """Reads for the API; one lock because an embedded engine handle is not for concurrent use.

    Quantities are summed exactly in each meter's base unit and divided once, here (a level is
    taken per resource first, see ``of_one_resource``); amounts are the rated rows' sums.
    """

    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self._table = f"{database}.{RATED_USAGE}"
        self._events = f"{database}.{USAGE_EVENTS}"
        self._messages_table = f"{database}.{RAW_MESSAGES}"
        self._database = database
        self._lock = threading.Lock()

    def usage(
        self, scope: Scope, window: UsageWindow, granularity: Granularity, group_by: GroupBy
    ) -> list[dict[str, Any]]:
        bucket = f"{granularity.truncate_sql}(usage_start)"
        rows = self._exact(*_scoped(scope, window), bucket, [*group_by.columns, "currency"])
        return [{**row, "quantity": shown_quantity(row["quantity"])} for row in rows]

    def total(self, scope: Scope, window: UsageWindow) -> dict[str, Decimal]:
        """Amount per currency over the window."""
        where, parameters = _scoped(scope, window)
        query = f"SELECT currency, sum(amount) FROM {self._table} WHERE {where} GROUP BY currency"
        with self._lock:
            rows = self._client.query(query, parameters=parameters).result_rows
        return {currency: amount for currency, amount in rows}

    def hourly_csv(self, scope: Scope, window: UsageWindow) -> Iterator[bytes]:
        """Hourly usage per resource and meter as CSV chunks. The query runs now, before a
        response starts, so that a failure is answered with an error rather than a cut file,
        and so that no lock is held while a client downloads."""
        rows = self._exact(*_scoped(scope, window), "toStartOfHour(usage_start)", CSV_COLUMNS[1:-2])
        return _csv_chunks(rows)

    def line_usage(self, line: LineScope) -> list[dict[str, Any]]:
        """Hourly usage behind an invoice line, per customer, resource and dimension, as it was
        billed (events stored by the close): its quantities add up to the line's."""
        where = f"{USAGE_WITHIN} AND {LINE_WHERE} AND {stored_by(self._database)}"
        keys = ["customer_id", "resource_id", "product", "dimension"]
        return self._exact(where, line.parameters(), "toStartOfHour(usage_start)", keys)

    def _exact(self, where: str, parameters: dict[str, Any], bucket: str, keys: list[str]) -> list[dict[str, Any]]:
        """Rated usage per ``period_start`` (``bucket`` of each row's start, UTC) and ``keys``,
        in that order: exact quantities (a ``Fraction``: shown, each is rounded once), amounts
        summed, and how many rated rows each holds."""
        # grouped by meter too: of_one_resource picks the aggregate by the row's meter
        per_resource = ", ".join(dict.fromkeys([*keys, "meter", "resource_id", "base_divisor"]))
        grouped = ", ".join(["period_start", *keys])
        query = (
            f"SELECT {grouped}, base_divisor, sum(base) AS base, sum(amount) AS amount, sum(rows) AS rated_rows "
            f"FROM (SELECT toDateTime({bucket}, 'UTC') AS period_start, {per_resource}, "
            f"{of_one_resource('base_quantity')} AS base, sum(amount) AS amount, count() AS rows "
            f"FROM {self._table} WHERE {where} GROUP BY period_start, {per_resource}) "
            f"GROUP BY {grouped}, base_divisor"
        )
        with self._lock:
            rows = list(self._client.query(query, parameters=parameters).named_results())
        names = ["period_start", *keys]
        combined: dict[tuple[Any, ...], dict[str, Any]] = {}
        for row in rows:
            key = tuple(row[name] for name in names)
            if key not in combined:
                combined[key] = {"quantity": Fraction(0), "amount": Decimal(0), "rated_rows": 0}
            total = combined[key]
            total["quantity"] += Fraction(row["base"]) / row["base_divisor"]
            total["amount"] += row["amount"]
            total["rated_rows"] += row["rated_rows"]
        return [{**dict(zip(names, key, strict=True)), **total} for key, total in sorted(combined.items())]

    def line_events(self, line: LineScope, limit: int, offset: int) -> list[str]:
        """The raw events behind an invoice line, as they were received, oldest first.

        Each event is cut out of its stored message by ClickHouse, so only the events travel;
        events stored before messages were kept whole carry their JSON themselves.
        """
        query = (
            f"WITH page AS (SELECT time, id, event, message_id, offset, length FROM {self._events} FINAL "
            f"WHERE {EVENTS_WHERE} AND {stored_by(self._database, 'id')} "
            "ORDER BY time, id LIMIT {limit:UInt32} OFFSET {offset:UInt32}) "
            "SELECT time, id, event FROM (SELECT page.time AS time, page.id AS id, "
            "substring(m.payload, page.offset + 1, page.length) AS event "
            f"FROM {self._messages_table} AS m FINAL INNER JOIN page ON m.message_id = page.message_id "
            "WHERE m.message_id IN (SELECT message_id FROM page) "
            "UNION ALL SELECT time, id, event FROM page WHERE message_id = '') ORDER BY time, id"
        )
        parameters = {**line.parameters(), "limit": limit, "offset": offset}
        with self._lock:
            rows = self._client.query(query, parameters=parameters).result_rows
        return [event.decode() if isinstance(event, bytes) else event for _, _, event in rows]


IN_SCOPE = (
    "arrayExists(i -> {dimension} = {{dimensions:Array(String)}}[i] "
    "AND {start} >= {{scope_starts:Array(DateTime64(3, 'UTC'))}}[i] "
    "AND {start} < {{scope_ends:Array(DateTime64(3, 'UTC'))}}[i], arrayEnumerate({{dimensions:Array(String)}}))"
)
"""Usage of ``dimension`` starting at ``start`` falls in one of an invoice line's scopes."""
EVENTS_WHERE = (
    "customer_id IN {customers:Array(String)} "
    f"AND usage_start > {{start:DateTime64(3)}} - INTERVAL {LONGEST_INTERVAL_S} SECOND "
    "AND usage_start < {end:DateTime64(3)} "
    "AND arrayExists((m, d, t) -> m = {meter:String} AND "
    + IN_SCOPE.format(dimension="d", start="t")
    + ", rated.meter, rated.dimension, rated.usage_start)"
)
LINE_WHERE = "customer_id IN {customers:Array(String)} AND meter = {meter:String} AND " + IN_SCOPE.format(
    dimension="dimension", start="usage_start"
)


@dataclass(frozen=True)
class LineScope:
    """What an invoice usage line bills: some customers' usage of one meter in some dimensions
    and spans of a period, as stored by the close that billed it."""

    customers: list[str]
    meter: str
    scopes: tuple[UsageScope, ...]
    start: datetime
    end: datetime
    stored_by: datetime

    def parameters(self) -> dict[str, Any]:
        return {
            "customers": self.customers,
            "meter": self.meter,
            "dimensions": [scope.dimension for scope in self.scopes],
            "scope_starts": [scope.start for scope in self.scopes],
            "scope_ends": [scope.end for scope in self.scopes],
            "start": self.start,
            "end": self.end,
            "stored_by": self.stored_by,
        }


def _csv_chunks(rows: list[dict[str, Any]]) -> Iterator[bytes]:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        shown = {**row, "quantity": shown_quantity(row["quantity"])}
        writer.writerow([f"{row['period_start']:%Y-%m-%dT%H:%M:%SZ}", *(shown[name] for name in CSV_COLUMNS[1:])])
        if out.tell() >= CSV_CHUNK_BYTES:
            yield out.getvalue().encode()
            out.seek(0)
            out.truncate()
    yield out.getvalue().encode()
