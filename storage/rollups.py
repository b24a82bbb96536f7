"""Keep the usage rollups in step with the stored events, flush by flush.

A flush of new events is added to the rollups in place: its events are rolled up on their own
(in this writer's scratch tables), and each rollup row they reach is written again as the sum of
its stored figures and theirs. The work grows with what the flush wrote, not with what the hours
and days already hold, so a fleet sampled every second costs per sample what one sampled every
five minutes does.

Adding is right only when no event is counted twice, so a flush is recounted instead when

- it holds repeats (a redelivery, a replayed spool, a worker killed before its commit): a crash
  may have come between an earlier write of these events and its addition;
- another writer may be adding at the same time (a sink that does not read every partition of
  the rated topic): of two additions made from the same stored row, one would be lost.

A recount rebuilds every (customer, hour its events started in) the flush touched from
``usage_events`` (which keeps one row per event), and every (customer, day) its usage reaches from
the hour rows; it replaces what the rows held, so it is right whatever happened before.

The sink writes the rollups before it records the flush's messages as stored, so a crash in
between leaves them a gap (``billing.completeness``) that a close waits for, and the redelivery
recounts them.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client

from schemas.clickhouse import (
    ROLLUP_KEY,
    USAGE_BY_DAY,
    USAGE_BY_HOUR,
    USAGE_EVENTS,
    days_from_hours,
    hours_from_events,
)

GROUPS = "Array(Tuple(String, DateTime('UTC')))"
FIGURES = "base_sum, base_max, base_latest, latest_at, amount, amount_base, rated_rows, stored_until"
MERGED = (
    "sum(base_sum), max(base_max), argMax(base_latest, latest_at), max(latest_at), sum(amount), "
    "sum(amount_base), sum(rated_rows), max(stored_until), now64(6)"
)
"""A rollup row's figures aggregated again: the stored row's with those a flush adds."""
ROLLED_UP = ("customer_id", "resource_id", "currency", "usage_start", "inserted_at")
"""The columns of an event that its rollup rows are made of, besides the ``rated.`` lists."""


class Rollups:
    def __init__(self, client: Client, database: str, writer: str = "sink") -> None:
        """``writer`` names the process writing: each has scratch tables of its own."""
        self._client = client
        hours, days = f"{database}.{USAGE_BY_HOUR}", f"{database}.{USAGE_BY_DAY}"
        by_start_hour = (
            f"(customer_id, toStartOfHour(usage_start)) IN {{groups:{GROUPS}}} "
            "AND usage_start >= {first:DateTime('UTC')} AND usage_start < {last:DateTime('UTC')} + INTERVAL 1 HOUR"
        )
        by_day = (
            f"(customer_id, toStartOfDay(hour)) IN {{groups:{GROUPS}}} "
            "AND hour >= {first:DateTime('UTC')} AND hour < {last:DateTime('UTC')} + INTERVAL 1 DAY"
        )
        self._recount_hours = f"INSERT INTO {hours} {hours_from_events(database, by_start_hour)}"
        self._sum_days = f"INSERT INTO {days} {days_from_hours(database, by_day)}"

        self._events = f"{database}.`rollup_events_{writer}`"
        self._added = f"{database}.`rollup_hours_{writer}`"
        for scratch, like in ((self._events, USAGE_EVENTS), (self._added, USAGE_BY_HOUR)):
            # made again at each start: the stored tables' columns may have changed since
            client.command(f"DROP TABLE IF EXISTS {scratch}")
            client.command(f"CREATE TABLE {scratch} AS {database}.{like} ENGINE = Memory")
        self._roll_up_added = f"INSERT INTO {self._added} {hours_from_events(database, '1', self._events)}"
        hour_key, day_key = f"hour, event_hour, {ROLLUP_KEY}", f"day, {ROLLUP_KEY}"
        # the rows of the resources and hours (days) a flush reaches, found by the leading
        # columns of the tables' order: a set of these short tuples is five times cheaper to
        # build and look up than one of whole keys, and takes a resource's other meters with it
        hour_rows = (
            f"(customer_id, hour, resource_id) IN (SELECT customer_id, hour, resource_id FROM {self._added}) "
            f"AND hour >= (SELECT min(event_hour) FROM {self._added})"
        )
        day_rows = (
            f"(customer_id, day, resource_id) IN (SELECT customer_id, toStartOfDay(hour), resource_id FROM "
            f"{self._added}) AND day >= (SELECT toStartOfDay(min(hour)) FROM {self._added})"
        )
        self._add_hours = (
            f"INSERT INTO {hours} ({hour_key}, {FIGURES}, computed_at) SELECT {hour_key}, {MERGED} FROM ("
            f"SELECT {hour_key}, {FIGURES} FROM {hours} FINAL WHERE {hour_rows} "
            f"UNION ALL SELECT {hour_key}, {FIGURES} FROM {self._added}) GROUP BY {hour_key}"
        )
        self._add_days = (
            f"INSERT INTO {days} ({day_key}, {FIGURES}, computed_at) SELECT {day_key}, {MERGED} FROM ("
            f"SELECT {day_key}, {FIGURES} FROM {days} FINAL WHERE {day_rows} "
            f"UNION ALL SELECT toStartOfDay(hour) AS day, {ROLLUP_KEY}, {FIGURES} FROM {self._added}) "
            f"GROUP BY {day_key}"
        )

    def add(self, new: pa.Table) -> None:
        """Add events just written for the first time (stamped ``inserted_at``) to the rollups.
        Only for a writer that no other writes beside: of two additions made from the same
        stored row at once, one would be lost."""
        if not new.num_rows:
            return
        self._client.command(f"TRUNCATE TABLE {self._events}")
        self._client.command(f"TRUNCATE TABLE {self._added}")
        rolled_up = [name for name in new.column_names if name in ROLLED_UP or name.startswith("rated.")]
        self._client.insert_arrow(self._events, new.select(rolled_up))
        self._client.command(self._roll_up_added)
        self._client.command(self._add_hours)
        self._client.command(self._add_days)

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
    """``python -m storage.rollups``: recount the configured store's rollups; exits 1 on drift."""
    from meterline.settings import Settings
    from storage.connection import connect

    settings = Settings()
    differing = drift(connect(settings), settings.clickhouse_database)
    print(json.dumps({"rollup_rows_differing": differing}))  # noqa: T201 - the command's answer
    raise SystemExit(1 if differing else 0)


if __name__ == "__main__":
    main()
