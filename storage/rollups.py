"""The usage rollups: what they hold, how a read aggregates them, and how they are corrected.

``usage_hours``, ``usage_days`` and ``usage_months`` are added to by the engine itself: each block
of events written to ``usage_events`` adds its rated rows to the hours in the same insert, and
what is added to the hours is added to the days and the months (materialized views, migrations
55 and 63). Rows of one key merge in the
background, and every reader aggregates them again. So keeping them costs what a flush writes,
never what an hour already holds, and writers add side by side.

Adding is right when each event is written once, which ``storage.identities`` sees to, except
across a crash: an insert cut between the events and their rollups (or between the hours and the
days), or identities recorded for events never written. When a flush meets repeats (the sign of
a redelivery) it corrects the hours they started in, recounted from ``usage_events`` (one row
per event), by adding the difference from what they hold (which the days receive too); then the
days they reach, recounted from the hours, by adding what still differs. The sink records a
flush's messages as stored only after writing it, so whatever a crash cut short comes again and
is corrected.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client

from schemas.meters import Meter
from storage.tables import USAGE_BY_DAY, USAGE_BY_HOUR, USAGE_BY_MONTH, USAGE_EVENTS

ROLLUP_KEY = "customer_id, resource_id, product, meter, dimension, unit, currency, base_divisor"
"""What a rollup row is usage of, besides its hour or day: one resource's use of one meter."""
PARTIALS = "base_sum, base_max, base_latest, latest_at, amount_base, rated_rows"
"""What a rollup row holds, enough to aggregate any number of them again exactly: the sum, the
highest and the latest (with its time) base quantity, the amount times the row's divisor (exact:
divided once, where rows of one divisor are summed), and how many rated rows."""
FIGURES = "base_sum, base_max, latest, amount, amount_base, rated_rows, stored_until"
"""The stored figures of a rollup row (``base_latest`` and ``latest_at`` are read from ``latest``)."""
MERGED = (
    "sum(base_sum) AS base_sum, max(base_max) AS base_max, max(latest) AS latest, sum(amount) AS amount, "
    "sum(amount_base) AS amount_base, sum(rated_rows) AS rated_rows, max(stored_until) AS stored_until"
)
"""Rollup rows' figures aggregated, as the engine merges them."""
NEGATED = "-base_sum, base_max, latest, -amount, -amount_base, -rated_rows, stored_until"
"""A row's figures to take away: its sums negated, its highest figures kept (taking the highest
again changes nothing)."""
GROUPS = "Array(Tuple(String, DateTime('UTC')))"


def _level_meters() -> str:
    return ", ".join(f"'{meter.value}'" for meter in Meter if meter.aggregation.is_level)


_PRICED = "toDecimal256(rated.base_quantity, 12) * rated.unit_price"
RATED_AMOUNT_BASE = f"if(rated.meter IN ({_level_meters()}), toDecimal256(0, 24), {_PRICED})"
"""A rated element's amount times its divisor, exactly: what the rollups sum. A level's rows are
worth nothing until the close prices the period's figure."""


def hours_from_events(database: str, where: str) -> str:
    """Rows of ``usage_by_hour`` recounted from the stored events that ``where`` selects, each
    event once (``FINAL``): what the engine adds as events are written. A row is per hour of
    usage and per hour its events started in, so that the events of one start hour make exactly
    their own rows."""
    return f"""SELECT customer_id, toStartOfHour(rated.usage_start) AS hour, resource_id, rated.product AS product,
            rated.meter AS meter, rated.dimension AS dimension, rated.unit AS unit, currency,
            rated.base_divisor AS base_divisor, toStartOfHour(usage_start) AS event_hour,
            sum(rated.base_quantity) AS base_sum, max(rated.base_quantity) AS base_max,
            max((rated.usage_start, rated.base_quantity)) AS latest, sum(rated.amount) AS amount,
            sum({RATED_AMOUNT_BASE}) AS amount_base, toInt64(count()) AS rated_rows,
            max(inserted_at) AS stored_until
        FROM {database}.{USAGE_EVENTS} FINAL ARRAY JOIN rated
        WHERE {where}
        GROUP BY hour, event_hour, {ROLLUP_KEY}"""


PERIOD_START = {"hour": "hour", "day": "toStartOfDay(hour)", "month": "toStartOfMonth(hour)"}
"""Each rollup's period, as the start of the period an hour row falls in."""


def from_hours(database: str, period: str, where: str) -> str:
    """Rows of a rollup by ``period`` (``day`` or ``month``) from the hour rows ``where`` selects."""
    return f"""SELECT {PERIOD_START[period]} AS {period}, {ROLLUP_KEY}, {MERGED}
        FROM {database}.{USAGE_BY_HOUR} FINAL
        WHERE {where}
        GROUP BY {period}, {ROLLUP_KEY}"""


class Rollups:
    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        hours, hour_key = f"{database}.{USAGE_BY_HOUR}", f"hour, event_hour, {ROLLUP_KEY}"
        start_hours = (
            f"(customer_id, toStartOfHour(usage_start)) IN {{groups:{GROUPS}}} "
            "AND usage_start >= {first:DateTime('UTC')} AND usage_start < {last:DateTime('UTC')} + INTERVAL 1 HOUR"
        )
        # hour rows are keyed by their hour first: the rows of events starting at ``first`` or
        # later are in hours from ``first`` on
        stored_hours = f"(customer_id, event_hour) IN {{groups:{GROUPS}}} AND hour >= {{first:DateTime('UTC')}}"
        self._correct_hours = (
            f"INSERT INTO {hours} ({hour_key}, {FIGURES}) SELECT {hour_key}, {MERGED} FROM ("
            f"SELECT {hour_key}, {FIGURES} FROM ({hours_from_events(database, start_hours)}) "
            f"UNION ALL SELECT {hour_key}, {NEGATED} FROM {hours} FINAL WHERE {stored_hours}"
            f") GROUP BY {hour_key}"
        )
        self._correct_days = _recount_from_hours(database, USAGE_BY_DAY, "day")
        self._correct_months = _recount_from_hours(database, USAGE_BY_MONTH, "month")

    def correct(self, usage: pa.Table) -> None:
        """Make the hours the events ``usage`` started in, and the days and months their usage
        reaches, hold what a recount of the stored events gives: for a flush that repeats events
        (a redelivery), whose first writing a crash may have cut short. The hours first: what is
        added to them reaches the days and months, whose recount then finds only what a crash
        kept from them."""
        steps = (
            (self._correct_hours, touched_start_hours),
            (self._correct_days, touched_days),
            (self._correct_months, touched_months),
        )
        for statement, touched in steps:
            groups = touched(usage)
            if groups.num_rows:
                self._client.command(statement, parameters=_groups(groups))


def _recount_from_hours(database: str, table: str, period: str) -> str:
    """An insert that adds to the ``period`` rollup what it lacks of a recount of the hours, for
    the (customer, ``period``) groups given."""
    rollup, key = f"{database}.{table}", f"{period}, {ROLLUP_KEY}"
    hours = _in_periods(PERIOD_START[period], "hour", period)
    return (
        f"INSERT INTO {rollup} ({key}, {FIGURES}) SELECT {key}, {MERGED} FROM ("
        f"SELECT {key}, {FIGURES} FROM ({from_hours(database, period, hours)}) "
        f"UNION ALL SELECT {key}, {NEGATED} FROM {rollup} FINAL WHERE {_in_periods(period, period, period)}"
        f") GROUP BY {key}"
    )


def _in_periods(start: str, column: str, period: str) -> str:
    """Rows whose ``start`` (an expression of ``column``) is among the groups' days or months."""
    length = {"day": "INTERVAL 1 DAY", "month": "INTERVAL 1 MONTH"}[period]
    return (
        f"(customer_id, {start}) IN {{groups:{GROUPS}}} "
        f"AND {column} >= {{first:DateTime('UTC')}} AND {column} < {{last:DateTime('UTC')}} + {length}"
    )


def touched_start_hours(usage: pa.Table) -> pa.Table:
    """The distinct (customer, hour its event started) of written events."""
    return _distinct(_text(usage["customer_id"]), pc.floor_temporal(usage["usage_start"], unit="hour"))


def touched_days(usage: pa.Table) -> pa.Table:
    """The distinct (customer, day) that written events have usage in: an event that crosses
    midnight reaches two days."""
    return _touched(usage, "day")


def touched_months(usage: pa.Table) -> pa.Table:
    """The distinct (customer, month) that written events have usage in."""
    return _touched(usage, "month")


def _touched(usage: pa.Table, unit: str) -> pa.Table:
    starts = usage["rated.usage_start"].combine_chunks()
    owners = pc.list_parent_indices(starts)
    return _distinct(_text(usage["customer_id"]).take(owners), pc.floor_temporal(pc.list_flatten(starts), unit=unit))


def _text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Decoded frames hold string views, which few kernels take yet."""
    return column.cast(pa.string())


def _distinct(customers: Any, starts: Any) -> pa.Table:
    return pa.table({"customer": customers, "start": starts}).group_by(["customer", "start"]).aggregate([])


def _groups(distinct: pa.Table) -> dict[str, Any]:
    rows = list(zip(distinct["customer"].to_pylist(), distinct["start"].to_pylist(), strict=True))
    starts = distinct["start"]
    return {"groups": rows, "first": pc.min(starts).as_py(), "last": pc.max(starts).as_py()}


def drift(client: Client, database: str) -> int:
    """How many rollup rows differ from a recount of every stored event (0 when in step): what
    the exactly-once tests check after every fault, and an operator can run at any time."""
    figures = "sum(base_sum), max(base_max), max(latest), sum(amount), sum(amount_base), sum(rated_rows)"
    counted = (
        f"SELECT customer_id, {{period}} AS period, {ROLLUP_KEY}, {figures} FROM ("
        f"{hours_from_events(database, '1')}) GROUP BY period, {ROLLUP_KEY}"
    )
    rolled = f"SELECT customer_id, {{period}} AS period, {ROLLUP_KEY}, {figures} FROM {{table}} FINAL "
    rolled += f"GROUP BY period, {ROLLUP_KEY}"
    differing = 0
    for table, period in ((USAGE_BY_HOUR, "hour"), (USAGE_BY_DAY, "day"), (USAGE_BY_MONTH, "month")):
        recount = counted.format(period=PERIOD_START[period])
        stored = rolled.format(period=period, table=f"{database}.{table}")
        for one, other in ((stored, recount), (recount, stored)):
            query = f"SELECT count() FROM (SELECT * FROM ({one}) EXCEPT SELECT * FROM ({other}))"
            differing += int(str(client.command(query)))
    return differing


def main() -> None:
    """``python -m storage.rollups``: recount the configured store's rollups; exits 1 on drift."""
    from meterline.settings import Settings
    from storage.connection import connect

    settings = Settings()
    differing = drift(connect(settings), settings.clickhouse_database)
    print(json.dumps({"rollup_rows_differing": differing}))  # noqa: T201 - the command's answer
    raise SystemExit(1 if differing else 0)


if __name__ == "__main__":
    main()
