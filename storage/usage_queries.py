"""Usage read models over ClickHouse: what the usage endpoints and exports show, to the cent.

Every figure comes from the exact rollups where they cover the window, and from the stored
events (each once) at its edges (``storage.usage_read``); an invoice line's raw events
come from the events as they were received.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import Any

import orjson
import pyarrow as pa

from billing.invoices import UsageScope
from billing.periods import check_buckets, check_window
from billing.scope import Scope
from meterline.exceptions import UnknownCustomer
from schemas import columnar
from schemas.events import LONGEST_INTERVAL_S
from storage.connection import ClientPool, as_utc
from storage.tables import RAW_MESSAGES, USAGE_BY_HOUR, USAGE_EVENTS
from storage.usage_read import AMOUNT, RESOURCE_TOTAL, UsageRead, customer_totals, usage_rows

HOURLY_KEYS = ("customer_id", "resource_id", "product", "meter", "dimension", "unit", "currency")
"""What an hourly row is usage of, besides its hour."""


LINE_KEYS = ["customer_id", "resource_id", "product", "dimension"]
"""What an invoice line's hourly usage is given per."""


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
class ResourcePage:
    """Up to ``limit`` resources, in order of their id, after ``after`` (from the start: "")."""

    limit: int
    after: str = ""


@dataclass(frozen=True)
class ReportPage:
    """A page of a usage report (``UsageQueries.report_page``)."""

    rows: pa.Table
    """Rows holding the report's first rows in time order (``usage``'s columns), unsorted."""
    more: bool
    """Whether the report has rows past the first asked for."""
    totals: dict[str, Fraction]
    """The whole report's amount per currency, exact."""


@dataclass(frozen=True)
class UsageWindow:
    customer_id: str
    start: datetime
    end: datetime
    resources: tuple[str, ...] | None = None
    """Only these resources' usage (a page of them), or every resource's."""

    def __post_init__(self) -> None:
        check_window(self.start, self.end)

    def first_days(self) -> list[UsageWindow]:
        """The window's first day, then its first eight, as windows of their own (``first_days``)."""
        return [replace(self, end=end) for end in first_day_ends(self.start, self.end)]

    def read(self, scope: Scope, *, by_day: bool, by_month: bool = False) -> UsageRead:
        """The window as a caller may read it: a customer it does not see does not exist for it,
        and a read token limited to some meters shows only theirs."""
        if not scope.sees_customer(self.customer_id):
            raise UnknownCustomer(f"no customer {self.customer_id!r}")
        customer = "customer_id = {customer:String}"
        parameters: dict[str, Any] = {"customer": self.customer_id}
        condition = customer
        if scope.meters is not None:
            condition += " AND meter IN {meters:Array(String)}"
            parameters["meters"] = sorted(scope.meters)
        if self.resources is not None:
            customer += " AND resource_id IN {resources:Array(String)}"
            condition += " AND resource_id IN {resources:Array(String)}"
            parameters["resources"] = list(self.resources)
        return UsageRead(self.start, self.end, condition, parameters, customer, by_day=by_day, by_month=by_month)


class UsageQueries:
    """Reads for the API, each on a client of its own from the pool, side by side.

    Quantities are summed exactly in each meter's base unit and divided once, here (a level is
    taken per resource first, see ``RESOURCE_TOTAL``); amounts the same way, from the exact
    products of base quantity and unit price (``AMOUNT``).
    """

    def __init__(self, pool: ClientPool, database: str) -> None:
        self._pool = pool
        self._events = f"{database}.{USAGE_EVENTS}"
        self._hours = f"{database}.{USAGE_BY_HOUR}"
        self._messages_table = f"{database}.{RAW_MESSAGES}"
        self._database = database

    def usage(self, scope: Scope, window: UsageWindow, granularity: Granularity, group_by: GroupBy) -> pa.Table:
        """The rows of a usage report (``UsageRow``'s columns, those of ``group_by`` only)."""
        check_buckets(window.start, window.end, granularity.value)
        read = window.read(scope, by_day=granularity is not Granularity.HOUR, by_month=granularity is Granularity.MONTH)
        return self._shown(read, granularity.truncate_sql, [*group_by.columns, "currency"])

    def report_page(
        self, scope: Scope, window: UsageWindow, granularity: Granularity, group_by: GroupBy, first: int
    ) -> ReportPage:
        """What a page of a usage report shows: rows holding its first ``first`` in time order
        (those of its first days, if they have as many), whether it has more, and its total per
        currency, exact. A month of a large customer by hour and resource is 385,000 rows,
        which took a second to read whole for a page that shows a thousand (and 150 ms more to
        count them in the engine)."""
        check_buckets(window.start, window.end, granularity.value)
        narrowings = window.first_days() if granularity is not Granularity.MONTH else []
        for narrowed in [*narrowings, window]:
            rows = self.usage(scope, narrowed, granularity, group_by)
            if narrowed is window or rows.num_rows >= first:
                break
        more = rows.num_rows > first or narrowed is not window
        return ReportPage(rows, more, self._amounts(window.read(scope, by_day=True, by_month=True)))

    def _amounts(self, read: UsageRead) -> dict[str, Fraction]:
        """The exact amount per currency of a read's usage."""
        rows_query, parameters = usage_rows(self._database, read)
        query = f"SELECT currency, base_divisor, sum(amount_base) FROM ({rows_query}) GROUP BY currency, base_divisor"
        amounts: dict[str, Fraction] = {}
        for currency, divisor, amount_base in self._pool.query(query, parameters).result_rows:
            amounts[currency] = amounts.get(currency, Fraction(0)) + Fraction(amount_base) / divisor
        return amounts

    def resource_page(self, scope: Scope, window: UsageWindow, page: ResourcePage) -> tuple[list[str], str | None]:
        """The resources of a page of a report by resource (``page.limit`` of those with usage in
        the window, in order of their id, after ``page.after``), and the id to ask for the next
        page after (none on the last). Found in the hourly rollup's key, whose rows hold every
        piece of usage by the hour it falls in."""
        read = window.read(scope, by_day=False)
        query = (
            f"SELECT DISTINCT resource_id FROM {self._hours} "
            "WHERE hour >= toStartOfHour({start:DateTime64(3, 'UTC')}) AND hour < {end:DateTime64(3, 'UTC')} "
            f"AND resource_id > {{after:String}} AND ({read.condition}) ORDER BY resource_id LIMIT {{more:UInt32}}"
        )
        parameters = {**(read.parameters or {}), "start": window.start, "end": window.end}
        parameters |= {"after": page.after, "more": page.limit + 1}
        found = [row[0] for row in self._pool.query(query, parameters).result_rows]
        if len(found) > page.limit:
            return found[: page.limit], found[page.limit - 1]
        return found, None

    def hourly(self, scope: Scope, window: UsageWindow) -> pa.Table:
        """Hourly usage per resource and meter: the rows of the CSV export."""
        check_buckets(window.start, window.end, Granularity.HOUR.value)
        return self._shown(window.read(scope, by_day=False), "toStartOfHour", list(HOURLY_KEYS))

    def line_usage(self, line: LineScope, first: int | None = None) -> list[dict[str, Any]]:
        """Hourly usage behind an invoice line, per customer, resource and dimension, as it was
        billed (events stored by the close): its quantities add up to the line's. With
        ``first``, only the first rows in hour and key order, up to that many (a page of a line
        that a large customer's month makes 80,000 rows of)."""
        if first is None:
            return self._exact(line.read(), "toStartOfHour", LINE_KEYS)
        for narrowed in [*line.first_days(), line]:
            # rows come in hour order: a page the line's first days fill is the whole line's page
            rows = self._exact(narrowed.read(), "toStartOfHour", LINE_KEYS, first)
            if narrowed is line or len(rows) >= first:
                break
        return rows

    def line_quantity(self, line: LineScope) -> Fraction:
        """What an invoice line's usage adds up to as the close counted it (``customer_totals``),
        each of the line's scopes apart as the close priced each apart."""
        rows_query, parameters = usage_rows(self._database, line.read())
        scope = SCOPE_OF.format(dimension="dimension", start="t")
        rows = self._pool.query(customer_totals(rows_query, scope), parameters).result_rows
        return sum((Fraction(base) / divisor for *_, divisor, _part, base in rows), Fraction(0))

    def _per_resource(self, read: UsageRead, truncate: str, keys: list[str]) -> tuple[str, dict[str, Any]]:
        """Each resource's total of a meter (``RESOURCE_TOTAL``) per ``period_start`` (``truncate``
        of each row's start, UTC) and ``keys``, with its amount and rated rows."""
        bucketed, parameters = self._bucketed(read, truncate)
        # grouped by meter too: RESOURCE_TOTAL picks the aggregate by the row's meter
        per_resource = ", ".join(dict.fromkeys(["period_start", *keys, "meter", "resource_id", "base_divisor"]))
        query = (
            f"SELECT {per_resource}, {RESOURCE_TOTAL} AS base, {AMOUNT} AS amount, "
            "sum(amount_base) AS amount_base_sum, sum(rated_rows) AS rows "
            f"FROM ({bucketed}) GROUP BY {per_resource}"
        )
        return query, parameters

    def _bucketed(self, read: UsageRead, truncate: str) -> tuple[str, dict[str, Any]]:
        """The read's rows, each with its ``period_start``: ``truncate`` of its start, UTC."""
        rows_query, parameters = usage_rows(self._database, read)
        return f"SELECT toDateTime64({truncate}(t), 0, 'UTC') AS period_start, * FROM ({rows_query})", parameters

    def _arrow(self, query: str, parameters: dict[str, Any]) -> pa.Table:
        with self._pool.client() as client:  # unsorted: polars sorts them faster where they are shown
            return client.query_arrow(query, parameters=parameters, use_strings=True)

    def _shown(self, read: UsageRead, truncate: str, keys: list[str]) -> pa.Table:
        """Usage per ``period_start`` and ``keys``, in that order, with its quantity and amount rounded
        once to 12 places (in the engine: exact sums divided by the unit's divisor to 24 places,
        then rounded half away from zero, which is the exact value's rounding).
        As Arrow: a month of a large customer by hour and resource is hundreds of thousands of
        rows, which Python objects would take seconds to make."""
        if {"resource_id", "meter"} <= set(keys):
            per_resource_rows = self._resource_rows(read, truncate, keys)
            if per_resource_rows is not None:
                return per_resource_rows
        per_resource, parameters = self._per_resource(read, truncate, keys)
        grouped = ", ".join(["period_start", *keys])
        query = (
            f"SELECT {grouped}, {_shown_figure('sum(quantity)')} AS quantity, "
            f"{_shown_figure('sum(amount)')} AS amount, "
            f"sum(rows) AS rated_rows FROM (SELECT {grouped}, toDecimal256(sum(base), 24) / base_divisor AS quantity, "
            f"sum(amount) AS amount, sum(rows) AS rows FROM ({per_resource}) GROUP BY {grouped}, base_divisor) "
            f"GROUP BY {grouped}"
        )
        return self._arrow(query, parameters)

    def _resource_rows(self, read: UsageRead, truncate: str, keys: list[str]) -> pa.Table | None:
        """``_shown`` of ``keys`` that name a resource and a meter, where a row is one resource's
        and the usual case is read in one aggregation instead of three: a row of one divisor is
        its exact figures divided once, which is what ``_shown`` computes. None if a row would
        mix base units of different divisors (never so far), for ``_shown`` to add them apart."""
        bucketed, parameters = self._bucketed(read, truncate)
        grouped = ", ".join(["period_start", *keys])
        quantity = _shown_figure(f"toDecimal256({RESOURCE_TOTAL}, 24) / any(base_divisor)")
        amount = _shown_figure("toDecimal256(sum(amount_base), 24) / any(base_divisor)")
        query = (
            f"SELECT {grouped}, {quantity} AS quantity, {amount} AS amount, sum(rated_rows) AS rated_rows, "
            f"min(base_divisor) = max(base_divisor) AS one_divisor FROM ({bucketed}) GROUP BY {grouped}"
        )
        rows = self._arrow(query, parameters)
        if rows.num_rows and pa.compute.min(rows["one_divisor"]).as_py() != 1:
            return None
        return rows.drop_columns(["one_divisor"])

    def _exact(self, read: UsageRead, truncate: str, keys: list[str], first: int | None = None) -> list[dict[str, Any]]:
        """Usage per ``period_start`` and ``keys``, in that order: exact quantities (a
        ``Fraction``), exact amounts (a ``Fraction``), and how many rated rows each holds; with
        ``first``, the first of them only, up to that many."""
        per_resource, parameters = self._per_resource(read, truncate, keys)
        names = ["period_start", *keys]
        if first is not None:
            order = ", ".join(names)
            per_resource = f"SELECT * FROM ({per_resource}) ORDER BY {order} LIMIT {{first:UInt32}}"
            parameters = {**parameters, "first": first + 1}
        fetched = list(self._pool.query(per_resource, parameters).named_results())
        combined: dict[tuple[Any, ...], dict[str, Any]] = {}
        for row in fetched:
            key = tuple(row[name] for name in names)
            if key not in combined:
                combined[key] = {"quantity": Fraction(0), "amount": Fraction(0), "rated_rows": 0}
            total = combined[key]
            total["quantity"] += Fraction(row["base"]) / row["base_divisor"]
            total["amount"] += Fraction(row["amount_base_sum"]) / row["base_divisor"]
            total["rated_rows"] += row["rows"]
        rows = [{**dict(zip(names, key, strict=True)), **total} for key, total in sorted(combined.items())]
        if first is not None and len(fetched) > first:
            # the limit cut in: a key's rows are adjacent in this order, so only the last key
            # fetched may have more rows past it, and it is left out
            rows = rows[:-1]
        return rows if first is None else rows[:first]

    def line_events(self, line: LineScope, limit: int, offset: int) -> list[str]:
        """The raw events behind an invoice line, as they were received, oldest first.

        Each event is cut out of its stored message by ClickHouse, so only the events travel;
        events stored before messages were kept whole carry their JSON themselves.
        """
        # the page's events first, by their key columns only (an event whose every copy was
        # stored after the close is not behind the line), then the last copy of each, looked up
        # by the table's key (its copies are one content: a conflicting one is refused), then
        # the slices of their messages: FINAL and a first-stored test over a large customer's
        # month took seconds, and a look-up by (source, id) alone reads a month of ids
        page_keys = (
            "SELECT time, any(customer_id), any(toStartOfHour(usage_start)), any(resource_id), source, id "
            f"FROM {self._events} WHERE {EVENTS_WHERE} AND inserted_at <= {{stored_by:DateTime64(3, 'UTC')}} "
            "GROUP BY time, source, id ORDER BY time, id, source LIMIT {limit:UInt32} OFFSET {offset:UInt32}"
        )
        last_copies = ", ".join(
            f"argMax({column}, inserted_at) AS {column}" for column in ("event", "message_id", "offset", "length")
        )
        copies = (
            f"SELECT source, id, {last_copies} FROM {self._events} "
            "WHERE (customer_id, toStartOfHour(usage_start), resource_id, source, id) "
            "IN {keys:Array(Tuple(String, DateTime('UTC'), String, String, String))} GROUP BY source, id"
        )
        for narrowed in [*line.first_days(), line]:
            # an event left out of the first days started after them, so it comes later in time
            # order than every event the page holds if the page's last one ended before they did
            parameters = {**narrowed.parameters(), "limit": limit, "offset": offset}
            keys = self._pool.query(page_keys, parameters).result_rows
            if narrowed is line or (len(keys) == limit and as_utc(keys[-1][0]) < narrowed.end):
                break
        last = self._pool.query(copies, {"keys": [key[1:] for key in keys]}).result_rows if keys else []
        found = {(source, event_id): rest for source, event_id, *rest in last}
        events = [(time, event_id, *found[(source, event_id)]) for time, *_, source, event_id in keys]
        slices = self._message_slices([(message_id, at, length) for *_, message_id, at, length in events if length])
        rows = self._message_rows(
            [(message_id, at) for *_, message_id, at, length in events if message_id and not length]
        )
        return [
            _text(slices.get((message_id, at)) or rows.get((message_id, at)) or event)
            for _, _, event, message_id, at, _length in events
        ]

    def _message_rows(self, wanted: list[tuple[str, int]]) -> dict[tuple[str, int], str]:
        """Each (columnar message, row)'s sample, as the JSON event it stands for (``length`` 0
        marks a row: the engine cannot read Arrow out of a stored string)."""
        if not wanted:
            return {}
        query = (
            f"SELECT message_id, payload FROM {self._messages_table} FINAL WHERE message_id IN {{ids:Array(String)}}"
        )
        with self._pool.client() as client:  # the payload as bytes: an Arrow stream is no UTF-8 text
            found = client.query_arrow(query, {"ids": sorted({message_id for message_id, _ in wanted})})
        # the engine labels a String as UTF-8 text; read its bytes as they are
        payloads = dict(
            zip(found["message_id"].to_pylist(), found["payload"].cast(pa.binary()).to_pylist(), strict=True)
        )
        return {
            (message_id, row): orjson.dumps(columnar.event_at(payloads[message_id], row)).decode()
            for message_id, row in wanted
            if message_id in payloads
        }

    def _message_slices(self, wanted: list[tuple[str, int, int]]) -> dict[tuple[str, int], bytes | str]:
        """Each (message, offset, length)'s bytes, cut out of its stored message by the engine."""
        if not wanted:
            return {}
        query = (
            "SELECT message_id, slice.2 AS at, substring(payload, slice.2 + 1, slice.3) "
            f"FROM {self._messages_table} FINAL "
            "ARRAY JOIN arrayFilter(s -> s.1 = message_id, {slices:Array(Tuple(String, UInt32, UInt32))}) AS slice "
            "WHERE message_id IN {ids:Array(String)}"
        )
        parameters = {"slices": wanted, "ids": sorted({message_id for message_id, _, _ in wanted})}
        return {(message_id, at): event for message_id, at, event in self._pool.query(query, parameters).result_rows}


def _text(event: bytes | str) -> str:
    return event.decode() if isinstance(event, bytes) else str(event)


def _shown_figure(exact: str) -> str:
    """An exact figure (at 24 places) as usage rows show it: rounded once to 12 places, half away
    from zero."""
    return f"toDecimal128(round({exact}, 12), 12)"


SCOPE_OF = (
    "arrayFirstIndex(i -> {dimension} = {{dimensions:Array(String)}}[i] "
    "AND {start} >= {{scope_starts:Array(DateTime64(3, 'UTC'))}}[i] "
    "AND {start} < {{scope_ends:Array(DateTime64(3, 'UTC'))}}[i], arrayEnumerate({{dimensions:Array(String)}}))"
)
"""Which of an invoice line's scopes usage of ``dimension`` starting at ``start`` falls in (from
1), or 0 for none."""
IN_SCOPE = SCOPE_OF + " > 0"
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
    dimension="dimension", start="t"
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

    def first_days(self) -> list[LineScope]:
        """The line's first day, then its first eight, as lines of their own (``first_days``)."""
        return [replace(self, end=end) for end in first_day_ends(self.start, self.end)]

    def read(self) -> UsageRead:
        """The line's usage; its scopes' bounds are instants the rollups must be cut at."""
        cuts = tuple(bound for scope in self.scopes for bound in (scope.start, scope.end))
        customers = "customer_id IN {customers:Array(String)}"
        return UsageRead(self.start, self.end, LINE_WHERE, self.parameters(), customers, cuts, self.stored_by)


def first_day_ends(start: datetime, end: datetime) -> list[datetime]:
    """The ends of the first day and the first eight days of ``[start, end)`` (midnights UTC, so
    whole hours and days), those before ``end``: where a page of a window's first rows in time
    order is looked for before the whole window, which a large customer's month makes hundreds of
    thousands of rows of. A page the first days fill is the whole window's page, as rows of a
    bucket (an hour, a day) come before those of the next."""
    midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
    ends = [midnight + timedelta(days=days) for days in (1, 8)]
    return [day_end for day_end in ends if start < day_end < end]


def totals(rows: pa.Table) -> dict[str, Decimal]:
    """Amount per currency of usage rows: they partition their window, so their sum is its total."""
    summed = rows.group_by("currency").aggregate([("amount", "sum")])
    return dict(zip(summed["currency"].to_pylist(), summed["amount_sum"].to_pylist(), strict=True))
