"""Rated usage per resource for any window, read from the rollups wherever they answer exactly.

A window is cut in four: whole months (``usage_months``, when the reader groups by month),
whole days (``usage_by_day``, when the reader groups by day or more),
whole hours (``usage_by_hour``) and what is left at its edges, read from the stored events
themselves (each once). An hour is read from the events too when an instant inside it matters
(a price change, the bound of an invoice line) or, for a read of what was stored by some time,
when one of its rows holds an event written later. Every part yields the same columns: one
resource's sum, highest and latest base quantity, amount and rated rows, per meter and time
``t`` (the day, the hour or the usage's own start), which ``RESOURCE_TOTAL`` aggregates again.

The rollups are read without ``FINAL``: every reader aggregates their rows again with the
functions the engine merges them by (sums, maxima, the latest figure), so rows not merged yet
give what merged ones would, without the cost of merging at read time (half a dashboard read).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from billing.periods import Period
from schemas.events import LONGEST_INTERVAL_S
from schemas.meters import Meter, PeriodAggregation
from storage.rollups import PARTIALS, ROLLUP_KEY
from storage.tables import USAGE_BY_DAY, USAGE_BY_HOUR, USAGE_BY_MONTH, USAGE_EVENTS

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def _meters(aggregation: PeriodAggregation) -> str:
    return ", ".join(f"'{m.value}'" for m in Meter if m.aggregation is aggregation)


RESOURCE_TOTAL = (
    f"multiIf(meter IN ({_meters(PeriodAggregation.PEAK)}), max(base_max), "
    f"meter IN ({_meters(PeriodAggregation.LATEST)}), argMax(base_latest, (latest_at, base_latest)), sum(base_sum))"
)
"""One resource's quantity of a meter, in base units, over whatever its rows are grouped by: the
sum of what its samples contributed, or for a level its highest or its latest figure. Summed over
resources, it gives a customer's quantity. Of two latest figures at one instant the higher counts,
as the rollups keep it, whether their rows were merged yet or not."""


def customer_totals(rows_query: str, part: str) -> str:
    """The counting rule of a close: per customer, meter, dimension and ``part`` (an expression over
    a row of ``rows_query``), each resource's ``RESOURCE_TOTAL`` summed over the customer's
    resources, in base units. An invoice line's drill-down counts with it too, so the figure it
    shows is the line's."""
    return f"""SELECT customer_id, meter, dimension, any(unit), base_divisor, part, sum(of_resource)
            FROM (
                SELECT customer_id, resource_id, meter, dimension, any(unit) AS unit, base_divisor,
                    {part} AS part, {RESOURCE_TOTAL} AS of_resource
                FROM ({rows_query})
                GROUP BY customer_id, resource_id, meter, dimension, base_divisor, part
            )
            GROUP BY customer_id, meter, dimension, base_divisor, part"""


PIECE_AMOUNT_BASE = (
    f"if(meter IN ({_meters(PeriodAggregation.PEAK)}, {_meters(PeriodAggregation.LATEST)}), toDecimal256(0, 24), "
    "toDecimal256(base_quantity, 12) * unit_price)"
)
"""A rated piece's amount times its divisor, as the rollups keep it (``RATED_AMOUNT_BASE``)."""
AMOUNT = "toDecimal256(sum(amount_base), 24) / base_divisor"
"""The exact amount of usage rows grouped by (at least) ``base_divisor``: one division per group."""


def stored_by(database: str) -> str:
    """A condition on ``usage_events``: events first stored at or before ``stored_by``, which is
    what a close billed whatever arrived or was written again since (a copy written again before
    identities were kept carries a later ``inserted_at``, and ``FINAL`` shows the last copy). An
    event is known by its (source, id): another source's event with the same id is another event."""
    return (
        f"(source, id) IN (SELECT source, id FROM {database}.{USAGE_EVENTS} "
        f"WHERE usage_start > {{start:DateTime64(3, 'UTC')}} - INTERVAL {LONGEST_INTERVAL_S} SECOND "
        "AND usage_start < {end:DateTime64(3, 'UTC')} "
        "GROUP BY source, id HAVING min(inserted_at) <= {stored_by:DateTime64(3, 'UTC')})"
    )


@dataclass(frozen=True)
class UsageRead:
    """Usage starting in ``[start, end)`` that ``condition`` selects.

    ``condition`` may name ``customer_id``, ``resource_id``, ``product``, ``meter``, ``dimension``,
    ``unit``, ``currency`` and ``t``; a test of ``t`` against an instant is exact if the instant
    is a whole hour (a whole day with ``by_day``) or listed in ``cuts``.
    """

    start: datetime
    end: datetime
    condition: str = "1"
    parameters: dict[str, Any] | None = None
    event_condition: str = "1"
    """The part of ``condition`` that an event's own columns answer (``customer_id``,
    ``resource_id``): it lets the read of the edges skip other customers' events."""
    cuts: tuple[datetime, ...] = ()
    stored_by: datetime | None = None
    by_day: bool = False
    by_month: bool = False
    """With ``by_day``: a test of ``t`` is exact at whole months only (or ``cuts``), so whole
    months are read from ``usage_months``."""


def floor_hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def ceil_hour(at: datetime) -> datetime:
    floor = floor_hour(at)
    return floor if floor == at else floor + HOUR


@dataclass(frozen=True)
class WindowPlan:
    """Where each part of a window's usage is read from (all instants UTC):

    - whole months ``[month_lo, month_hi)`` from ``usage_months`` (empty unless the read groups
      by month and is not of what was stored by a cutoff), but the ``raw_months``;
    - whole days ``[day_lo, month_lo)`` and ``[month_hi, day_hi)`` from ``usage_by_day`` (empty
      unless the read groups by day and is not of what was stored by a cutoff), and every day of
      the ``raw_months`` (months whose row cannot answer, as one of their days is cut), but the
      ``raw_days``;
    - whole hours ``[hour_lo, day_lo)`` and ``[day_hi, hour_hi)`` from ``usage_by_hour``, and every
      hour of the ``raw_days`` (days whose row cannot answer, as one of their hours is cut), but
      the ``raw_hours``;
    - from the events themselves: the edges ``[start, hour_lo)`` and ``[hour_hi, end)``, the
      ``raw_hours`` (an instant inside them matters), and, for a read of what was stored by
      ``stored_by``, the hours holding an event written later (found in the engine).
    """

    start: datetime
    end: datetime
    hour_lo: datetime
    hour_hi: datetime
    day_lo: datetime
    day_hi: datetime
    raw_hours: tuple[datetime, ...]
    raw_days: tuple[datetime, ...]
    stored_by: datetime | None
    month_lo: datetime | None = None
    month_hi: datetime | None = None
    """None for both: no month is read from ``usage_months`` (every day from the days)."""
    raw_months: tuple[datetime, ...] = ()

    @property
    def reads_months(self) -> bool:
        return self.month_lo is not None and self.month_hi is not None and self.month_lo < self.month_hi

    @property
    def reads_days(self) -> bool:
        if self.month_lo is None or self.month_hi is None or not self.reads_months:
            return self.day_lo < self.day_hi
        return self.day_lo < self.month_lo or self.month_hi < self.day_hi or bool(self.raw_months)

    @property
    def reads_hours(self) -> bool:
        return self.hour_lo < self.day_lo or self.day_hi < self.hour_hi or bool(self.raw_days)

    @property
    def reads_events(self) -> bool:
        edges = self.start < self.hour_lo or self.hour_hi < self.end
        rollups = self.reads_months or self.reads_days or self.reads_hours
        return edges or bool(self.raw_hours) or self.stored_by is not None or not rollups


def plan(read: UsageRead) -> WindowPlan:
    """The plan of a read: pure, so that its cases are tested without an engine."""
    start, end = read.start.astimezone(UTC), read.end.astimezone(UTC)
    hour_lo, hour_hi = ceil_hour(start), floor_hour(end)
    cuts = [cut.astimezone(UTC) for cut in read.cuts]
    raw_hours = sorted({floor_hour(cut) for cut in cuts if hour_lo <= cut < hour_hi and cut != floor_hour(cut)})
    day_lo = day_hi = hour_hi
    if read.by_day and read.stored_by is None:
        first_day = hour_lo if hour_lo.hour == 0 else hour_lo.replace(hour=0) + DAY
        last_day = hour_hi.replace(hour=0)
        if first_day < last_day:
            day_lo, day_hi = first_day, last_day
    raw_days = sorted({hour.replace(hour=0) for hour in raw_hours})
    month_lo = month_hi = None
    raw_months: list[datetime] = []
    if read.by_month and day_lo < day_hi:
        first_month = day_lo if day_lo.day == 1 else Period.containing(day_lo.date()).end
        last_month = day_hi.replace(day=1)
        if first_month < last_month:
            month_lo, month_hi = first_month, last_month
            raw_months = sorted({day.replace(day=1) for day in raw_days if month_lo <= day < month_hi})
    return WindowPlan(
        start,
        end,
        hour_lo,
        hour_hi,
        day_lo,
        day_hi,
        tuple(raw_hours),
        tuple(raw_days),
        read.stored_by,
        month_lo,
        month_hi,
        tuple(raw_months),
    )


def usage_rows(database: str, read: UsageRead) -> tuple[str, dict[str, Any]]:
    """A query of ``t``, the rollup key and the partial aggregates, and its parameters: the
    plan's parts, each rendered on its own, in one ``UNION ALL``."""
    window = plan(read)
    parameters = {
        **(read.parameters or {}),
        "start": window.start,
        "end": window.end,
        "hour_lo": window.hour_lo,
        "hour_hi": window.hour_hi,
        "day_lo": window.day_lo,
        "day_hi": window.day_hi,
        "raw_hours": list(window.raw_hours),
        "raw_days": list(window.raw_days),
    }
    if window.reads_months:
        parameters |= {"month_lo": window.month_lo, "month_hi": window.month_hi, "raw_months": list(window.raw_months)}
    if window.stored_by is not None:
        parameters["stored_by"] = window.stored_by
    parts = [
        render(database, window, read)
        for render, needed in (
            (_months, window.reads_months),
            (_days, window.reads_days),
            (_hours, window.reads_hours),
            (_pieces, window.reads_events),
        )
        if needed
    ]
    return " UNION ALL ".join(parts), parameters


def _later_hours(database: str, read: UsageRead) -> str:
    """(customer, hour) rows of the read's customers holding an event written after ``stored_by``."""
    return (
        f"SELECT customer_id, hour FROM {database}.{USAGE_BY_HOUR} WHERE hour >= {{hour_lo:DateTime('UTC')}} "
        "AND hour < {hour_hi:DateTime('UTC')} AND stored_until > {stored_by:DateTime64(3, 'UTC')} "
        f"AND ({read.event_condition})"
    )


def _months(database: str, window: WindowPlan, read: UsageRead) -> str:
    return (
        f"SELECT month AS t, {ROLLUP_KEY}, {PARTIALS} FROM {database}.{USAGE_BY_MONTH} "
        "WHERE month >= {month_lo:DateTime('UTC')} AND month < {month_hi:DateTime('UTC')} "
        + ("AND NOT has({raw_months:Array(DateTime('UTC'))}, month) " if window.raw_months else "")
        + f"AND ({read.condition})"
    )


def _days(database: str, window: WindowPlan, read: UsageRead) -> str:
    """The days around the whole months, and those of months with a day read from the hours."""
    if window.reads_months:
        days = (
            "((day >= {day_lo:DateTime('UTC')} AND day < {month_lo:DateTime('UTC')}) "
            "OR (day >= {month_hi:DateTime('UTC')} AND day < {day_hi:DateTime('UTC')})"
            + (" OR has({raw_months:Array(DateTime('UTC'))}, toStartOfMonth(day))) " if window.raw_months else ") ")
        )
    else:
        days = "day >= {day_lo:DateTime('UTC')} AND day < {day_hi:DateTime('UTC')} "
    return (
        f"SELECT day AS t, {ROLLUP_KEY}, {PARTIALS} FROM {database}.{USAGE_BY_DAY} WHERE {days}"
        + ("AND NOT has({raw_days:Array(DateTime('UTC'))}, day) " if window.raw_days else "")
        + f"AND ({read.condition})"
    )


def _hours(database: str, window: WindowPlan, read: UsageRead) -> str:
    """The hours around the whole days, and those of days with an hour read from the events:
    ranges of the table's key, so that a read touches only them."""
    return (
        f"SELECT hour AS t, {ROLLUP_KEY}, {PARTIALS} FROM {database}.{USAGE_BY_HOUR} "
        "WHERE ((hour >= {hour_lo:DateTime('UTC')} AND hour < {day_lo:DateTime('UTC')}) "
        "OR (hour >= {day_hi:DateTime('UTC')} AND hour < {hour_hi:DateTime('UTC')})"
        + (" OR has({raw_days:Array(DateTime('UTC'))}, toStartOfDay(hour))) " if window.raw_days else ") ")
        + ("AND NOT has({raw_hours:Array(DateTime('UTC'))}, hour) " if window.raw_hours else "")
        + (f"AND (customer_id, hour) NOT IN ({_later_hours(database, read)}) " if window.stored_by is not None else "")
        + f"AND ({read.condition})"
    )


def _events(database: str, window: WindowPlan, read: UsageRead) -> str:
    """Events that can reach the edges or an hour read from them, each once: the table's key
    bounds their start, and the minmax index on their end skips the rest. An edge that is empty
    (a window starting or ending on the hour) asks for no events: those crossing its bound have
    their pieces inside the window in the hourly rollup."""
    reaching = []
    if window.start < window.hour_lo:
        reaching.append("usage_start < {hour_lo:DateTime('UTC')}")
    if window.hour_hi < window.end:
        reaching.append("usage_end >= {hour_hi:DateTime('UTC')}")
    if window.raw_hours:
        reaching.append(
            "arrayExists(h -> usage_start < h + INTERVAL 1 HOUR AND usage_end >= h, {raw_hours:Array(DateTime('UTC'))})"
        )
    stored_by = ""
    if window.stored_by is not None:
        reaching.append(
            f"(customer_id, toStartOfHour(usage_start)) IN (SELECT customer_id, event_hour "
            f"FROM {database}.{USAGE_BY_HOUR} WHERE hour >= {{hour_lo:DateTime('UTC')}} "
            f"AND hour < {{hour_hi:DateTime('UTC')}} AND (customer_id, hour) IN ({_later_hours(database, read)}))"
        )
        stored_by = " AND inserted_at <= {stored_by:DateTime64(3, 'UTC')}"
    return (
        "SELECT customer_id, resource_id, currency, `rated.usage_start`, `rated.product`, `rated.meter`, "
        "`rated.dimension`, `rated.unit`, `rated.base_divisor`, `rated.base_quantity`, `rated.unit_price` "
        f"FROM {database}.{USAGE_EVENTS} "
        f"WHERE ({read.event_condition}) "
        # an event reaching the window started at most the longest interval before it: a bound
        # on the table's key, where the one on its end only skips granules by their index
        f"AND usage_start > {{start:DateTime64(3, 'UTC')}} - INTERVAL {LONGEST_INTERVAL_S} SECOND "
        "AND usage_start < {end:DateTime64(3, 'UTC')} AND usage_end >= {start:DateTime64(3, 'UTC')} "
        f"AND ({' OR '.join(reaching) or '0'}){stored_by} LIMIT 1 BY source, id"
    )


def _pieces(database: str, window: WindowPlan, read: UsageRead) -> str:
    """The rated pieces of those events that start in the edges, the raw hours or the hours
    with a later event, as rollup rows of one piece each."""
    later = ""
    if window.stored_by is not None:
        later = f" OR (customer_id, toStartOfHour(t)) IN ({_later_hours(database, read)})"
    return (
        "SELECT t, customer_id, resource_id, product, meter, dimension, unit, currency, base_divisor, "
        "base_quantity AS base_sum, base_quantity AS base_max, base_quantity AS base_latest, t AS latest_at, "
        f"{PIECE_AMOUNT_BASE} AS amount_base, toInt64(1) AS rated_rows FROM ({_events(database, window, read)}) "
        "ARRAY JOIN `rated.usage_start` AS t, `rated.product` AS product, `rated.meter` AS meter, "
        "`rated.dimension` AS dimension, `rated.unit` AS unit, `rated.base_divisor` AS base_divisor, "
        "`rated.base_quantity` AS base_quantity, `rated.unit_price` AS unit_price "
        "WHERE t >= {start:DateTime64(3, 'UTC')} AND t < {end:DateTime64(3, 'UTC')} AND ("
        "t < {hour_lo:DateTime('UTC')} OR t >= {hour_hi:DateTime('UTC')}"
        + (" OR has({raw_hours:Array(DateTime('UTC'))}, toStartOfHour(t))" if window.raw_hours else "")
        + f"{later}) AND ({read.condition})"
    )
