"""Usage events written once per identity, and the rollups kept exact beside them."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
from clickhouse_connect.driver.client import Client

from storage.identities import EventIdentities, Sorted, identities_of, rows_where
from storage.rollups import Rollups
from storage.tables import USAGE_EVENTS

# Replacing duplicates inside each inserted block costs ~40% of the insert; every read goes
# through FINAL (and background merges collapse duplicates too), so leave it to them.
INSERT_SETTINGS = {"optimize_on_insert": 0}
INSERTED_AT = pa.timestamp("ms", tz="UTC")


class UsageStore:
    """Usage events (``schemas.records.USAGE_EVENT_SCHEMA`` columns) written once per identity,
    their rollups added by the engine as they are written: the only way usage is stored.

    ``writer`` names the process writing (each needs a scratch table of its own)."""

    def __init__(self, client: Client, database: str, writer: str = "sink") -> None:
        self._client = client
        self._table = f"{database}.{USAGE_EVENTS}"
        self._identities = EventIdentities(client, database, f"identity_probe_{writer}")
        self._rollups = Rollups(client, database)

    def write(self, usage: pa.Table, stored_at: datetime) -> Sorted:
        """Record the new events' identities, then write them (the engine adds them to the
        rollups in the same insert). Repeats are the sign of a redelivery after a crash, which
        may have come between recording identities and writing their events, or inside the
        write: those never written are written now, and the rollups they reach corrected.
        Returns what was new, repeated, refused."""
        events = self._identities.sort(usage)
        self._identities.remember(events.new)
        unwritten = self._unwritten(events.repeats, events.new) if events.repeats.num_rows else events.repeats
        written = pa.concat_tables([events.new, unwritten]) if unwritten.num_rows else events.new
        if written.num_rows:
            stamped = written.append_column("inserted_at", in_every_row(stored_at, written.num_rows))
            self._client.insert_arrow(self._table, stamped, settings=INSERT_SETTINGS)
        if events.repeats.num_rows:
            self._rollups.correct(events.repeats)
        return Sorted(new=written, repeats=events.repeats, conflicts=events.conflicts, reasons=events.reasons)

    def _unwritten(self, repeats: pa.Table, new: pa.Table) -> pa.Table:
        """The repeats whose identity was recorded but whose event is not stored: neither among
        the events nor in this flush (once each)."""
        seen = self._identities.written(repeats, self._table) | set(identities_of(new).to_pylist())
        keep = []
        for key in identities_of(repeats).to_pylist():
            keep.append(key not in seen)
            seen.add(key)
        return rows_where(repeats, keep)


def in_every_row(written: datetime, rows: int) -> pa.Array:
    """The flush's time as a column: what ``inserted_at`` and ``received_at`` hold."""
    return pa.repeat(pa.scalar(written, type=INSERTED_AT), rows)
