"""Keep the usage rollups in step with the stored events, flush by flush.

After a flush writes events, every (customer, hour its events started in) it touched is recounted
from ``usage_events`` (which keeps one row per event), and every (customer, day) its usage
reaches is summed again from the hour rows. A customer's hour rather than each resource's: a
flush names a few hundred of those, where naming each resource made the recount's own
parameters cost more to parse than the recount. A recount replaces what the rows held, so an event
written twice - a redelivery, a replayed spool, a worker killed before its commit - still counts
once, and a late event updates the hours and days it belongs to. The work of a flush grows with
what is already stored for the customers' hours and days it touched, not with the flush.

The sink recounts before it records the flush's messages as stored, so a crash in between
leaves them a gap (``billing.completeness``) that a close waits for, and the redelivery
recounts them.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client

from schemas.clickhouse import ROLLUP_KEY, USAGE_BY_DAY, USAGE_BY_HOUR, days_from_hours, hours_from_events

GROUPS = "Array(Tuple(String, DateTime('UTC')))"


class Rollups:
    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        by_start_hour = (
            f"(customer_id, toStartOfHour(usage_start)) IN {{groups:{GROUPS}}} "
            "AND usage_start >= {first:DateTime('UTC')} AND usage_start < {last:DateTime('UTC')} + INTERVAL 1 HOUR"
        )
        by_day = (
            f"(customer_id, toStartOfDay(hour)) IN {{groups:{GROUPS}}} "
            "AND hour >= {first:DateTime('UTC')} AND hour < {last:DateTime('UTC')} + INTERVAL 1 DAY"
        )
        self._recount_hours = f"INSERT INTO {database}.{USAGE_BY_HOUR} {hours_from_events(database, by_start_hour)}"
        self._sum_days = f"INSERT INTO {database}.{USAGE_BY_DAY} {days_from_hours(database, by_day)}"

    def recount(self, usage: pa.Table) -> None:
        """Recount the rollups that the usage events just written (``usage``) touch."""
        for statement, touched in ((self._recount_hours, touched_start_hours), (self._sum_days, touched_days)):
            groups = touched(usage)
            if groups.num_rows:
                self._client.command(statement, parameters=_groups(groups))


def touched_start_hours(usage: pa.Table) -> pa.Table:
    """The distinct (customer, hour its event started) of written events."""
    return _distinct(_text(usage["customer_id"]), pc.floor_temporal(usage["usage_start"], unit="hour"))


def touched_days(usage: pa.Table) -> pa.Table:
    """The distinct (customer, day) that written events have usage in: an event that crosses
    midnight reaches two days."""
    starts = usage["rated.usage_start"].combine_chunks()
    owners = pc.list_parent_indices(starts)
    return _distinct(_text(usage["customer_id"]).take(owners), pc.floor_temporal(pc.list_flatten(starts), unit="day"))


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
    figures = "sum(base_sum), max(base_max), max(latest_at), sum(amount), sum(rated_rows)"
    counted = (
        f"SELECT customer_id, {{period}} AS period, {ROLLUP_KEY}, {figures} FROM ("
        f"{hours_from_events(database, '1')}) GROUP BY period, {ROLLUP_KEY}"
    )
    rolled = f"SELECT customer_id, {{period}} AS period, {ROLLUP_KEY}, {figures} FROM {{table}} FINAL "
    rolled += f"GROUP BY period, {ROLLUP_KEY}"
    differing = 0
    for table, period in ((USAGE_BY_HOUR, "hour"), (USAGE_BY_DAY, "day")):
        recount = counted.format(period="toStartOfDay(hour)" if period == "day" else "hour")
        stored = rolled.format(period=period, table=f"{database}.{table}")
        for one, other in ((stored, recount), (recount, stored)):
            query = f"SELECT count() FROM (SELECT * FROM ({one}) EXCEPT SELECT * FROM ({other}))"
            differing += int(str(client.command(query)))
    return differing


def main() -> None:
    """``python -m sinks.rollups``: recount the configured store's rollups; exits 1 on drift."""
    from meterline.settings import Settings
    from sinks.clickhouse import connect

    settings = Settings()
    differing = drift(connect(settings), settings.clickhouse_database)
    print(json.dumps({"rollup_rows_differing": differing}))  # noqa: T201 - the command's answer
    raise SystemExit(1 if differing else 0)


if __name__ == "__main__":
    main()
