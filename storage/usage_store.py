"""Usage events written once per identity, and the rollups kept in step with them."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
from clickhouse_connect.driver.client import Client

from schemas.clickhouse import USAGE_EVENTS
from storage.identities import EventIdentities, Sorted
from storage.rollups import Rollups

# Replacing duplicates inside each inserted block costs ~40% of the insert; every read goes
# through FINAL (and background merges collapse duplicates too), so leave it to them.
INSERT_SETTINGS = {"optimize_on_insert": 0}
INSERTED_AT = pa.timestamp("ms", tz="UTC")


class UsageStore:
    """Usage events (``schemas.records.USAGE_EVENT_SCHEMA`` columns) written once per identity,
    and the rollups recounted for them: the only way usage is stored.

    ``writer`` names the process writing (each needs a scratch table of its own)."""

    def __init__(self, client: Client, database: str, writer: str = "sink") -> None:
        self._client = client
        self._table = f"{database}.{USAGE_EVENTS}"
        self._identities = EventIdentities(client, database, f"identity_probe_{writer}")
        self._rollups = Rollups(client, database, writer)

    def write(self, usage: pa.Table, stored_at: datetime, sole_writer: bool = True) -> Sorted:
        """Write the new events, record their identities, and add them to the rollups; or recount
        every hour the new events and the repeats reach (``storage.rollups``) when there are
        repeats (which may be a redelivery after a crash that came between an earlier write and
        its rollup) or when another writer may be adding now (not ``sole_writer``). Returns
        what was new, repeated, refused."""
        events = self._identities.sort(usage)
        stamped = events.new.append_column("inserted_at", in_every_row(stored_at, events.new.num_rows))
        if events.new.num_rows:
            self._client.insert_arrow(self._table, stamped, settings=INSERT_SETTINGS)
            self._identities.remember(events.new)
        if events.repeats.num_rows or not sole_writer:
            self._rollups.recount(pa.concat_tables([events.new, events.repeats]))
        else:
            self._rollups.add(stamped)
        return events


def in_every_row(written: datetime, rows: int) -> pa.Array:
    """The flush's time as a column: what ``inserted_at`` and ``received_at`` hold."""
    return pa.repeat(pa.scalar(written, type=INSERTED_AT), rows)
