"""Keep each event identity to one usage, in storage: the guarantee behind every worker's window.

An event is known by its (``source``, ``id``). Before a flush writes usage events, each one's
identity is looked up among those stored (``event_identities``, a key-value table) and among the
flush's earlier rows:

- new: written, and its identity recorded with its content digest;
- a repeat (same content: a redelivery, a replayed spool, a re-sent batch): not written again, so
  what was stored first - its amounts as first rated - stays;
- a conflict (other content: another customer, resource, time or figure): refused, with its
  reason, to the dead letters.

A worker's window catches most repeats and conflicts before rating; this catches the rest, after
a worker restarted or forgot, and across workers. Identities are recorded before the events they
stand for are written (an event written twice would be added to the rollups twice), so a crash
in between leaves identities of events not written: when they come back as repeats, the store
looks for them among the events and writes those it does not find (``storage.usage_store``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client

from schemas import columnar
from schemas.identity import IDENTITY_SEPARATOR
from storage.tables import EVENT_IDENTITIES

RECORDED = ("digest", "customer_id", "resource_id", "usage_start")
"""What an identity keeps of the event it stands for: enough to tell a later copy's content."""


@dataclass(frozen=True)
class Sorted:
    """A flush's usage events, sorted: ``new`` to write, ``repeats`` stored before, and the
    ``conflicts`` with their reasons."""

    new: pa.Table
    repeats: pa.Table
    conflicts: pa.Table
    reasons: list[str]


class EventIdentities:
    def __init__(self, client: Client, database: str, probe: str) -> None:
        """``probe`` names this writer's scratch table (one per sink: it is emptied at each flush)."""
        self._client = client
        self._table = f"{database}.{EVENT_IDENTITIES}"
        self._probe = f"{database}.`{probe}`"
        client.command(f"CREATE TABLE IF NOT EXISTS {self._probe} (identity String) ENGINE = Memory")

    def sort(self, usage: pa.Table) -> Sorted:
        keys = identities_of(usage)
        distinct = pc.unique(keys)
        stored = self._stored(distinct)
        if not stored and len(distinct) == len(keys):  # a flush of new events, nearly always
            return Sorted(new=usage, repeats=usage.slice(0, 0), conflicts=usage.slice(0, 0), reasons=[])
        batch: dict[str, tuple[Any, ...]] = {}
        verdicts: list[int] = []  # 0 new, 1 repeat, 2 conflict
        reasons: list[str] = []
        rows = zip(keys.to_pylist(), *(_column(usage, name).to_pylist() for name in RECORDED), strict=True)
        for key, *content in rows:
            earlier = batch.get(key) or stored.get(key)
            if earlier is None:
                batch[key] = tuple(content)
                verdicts.append(0)
            elif same_event(earlier, tuple(content)):
                verdicts.append(1)
            else:
                verdicts.append(2)
                reasons.append(conflict_reason(key))
        return Sorted(
            new=_rows(usage, verdicts, 0),
            repeats=_rows(usage, verdicts, 1),
            conflicts=_rows(usage, verdicts, 2),
            reasons=reasons,
        )

    def remember(self, written: pa.Table) -> None:
        """Record the identities of events just written."""
        if not written.num_rows:
            return
        recorded = pa.table({"identity": identities_of(written), **{name: _column(written, name) for name in RECORDED}})
        self._client.insert_arrow(self._table, recorded)

    def written(self, usage: pa.Table, events_table: str) -> set[str]:
        """The identities of these events that ``events_table`` holds (in the hours they start in)."""
        self._probe_for(pc.unique(identities_of(usage)))
        starts = usage["usage_start"]
        found = self._client.query_arrow(
            f"SELECT concat(source, {{separator:String}}, id) AS identity FROM {events_table} "
            "WHERE usage_start >= {first:DateTime64(3, 'UTC')} AND usage_start <= {last:DateTime64(3, 'UTC')} "
            f"AND identity IN (SELECT identity FROM {self._probe})",
            parameters={
                "separator": IDENTITY_SEPARATOR,
                "first": pc.min(starts).as_py(),
                "last": pc.max(starts).as_py(),
            },
        )
        return set(_text(found["identity"]).to_pylist())

    def _probe_for(self, keys: pa.Array) -> None:
        self._client.command(f"TRUNCATE TABLE {self._probe}")
        self._client.insert_arrow(self._probe, pa.table({"identity": keys}))

    def _stored(self, keys: pa.Array) -> dict[str, tuple[Any, ...]]:
        """What is recorded of these identities, if anything."""
        self._probe_for(keys)
        found = self._client.query_arrow(
            f"SELECT identity, {', '.join(RECORDED)} FROM {self._table} "
            f"WHERE identity IN (SELECT identity FROM {self._probe})"
        )
        columns = [_text(found[name]).to_pylist() for name in found.column_names]
        return {key: tuple(content) for key, *content in zip(*columns, strict=True)}


def _rows(usage: pa.Table, verdicts: list[int], kind: int) -> pa.Table:
    return rows_where(usage, [verdict == kind for verdict in verdicts])


def rows_where(table: pa.Table, keep: list[bool]) -> pa.Table:
    """The rows kept, as slices of runs (decoded frames hold string views, which Arrow's filter
    and take do not handle yet; a flush is nearly always one run of new events)."""
    runs, start = [], None
    for row, kept in enumerate([*keep, False]):
        if kept and start is None:
            start = row
        elif not kept and start is not None:
            runs.append(table.slice(start, row - start))
            start = None
    return pa.concat_tables(runs) if runs else table.slice(0, 0)


def conflict_letter(event: dict[str, Any], reason: str, received: dict[str, bytes]) -> bytes:
    """A dead letter for a conflicting event, as the stage writes one (``Rejection.to_json``):
    the event as it came when its message is at hand, else what the stage made of it."""
    message = received.get(event["message_id"])
    if message is not None and not event["length"]:  # a row of a columnar message
        as_received: Any = columnar.event_at(message, event["offset"])
    elif message is not None:
        offset = event["offset"]
        as_received = orjson.loads(message[offset : offset + event["length"]])
    else:
        kept = ("id", "type", "source", "time", "customer_id", "resource_id", "message_id")
        as_received = {name: event[name] for name in kept}
    return orjson.dumps({"index": 0, "event_id": event["id"], "reason": reason, "event": as_received}, default=str)


def identities_of(usage: pa.Table) -> pa.ChunkedArray:
    return pc.binary_join_element_wise(_text(usage["source"]), _text(usage["id"]), IDENTITY_SEPARATOR)


def same_event(earlier: tuple[Any, ...], later: tuple[Any, ...]) -> bool:
    """Equal content digests; an event stored before digests were kept (0) is the same if it
    is about the same customer, resource and time."""
    digest, *about = earlier
    other_digest, *other_about = later
    if digest and other_digest:
        return bool(digest == other_digest)
    return _utc_free(about) == _utc_free(other_about)


def conflict_reason(key: str) -> str:
    source, _, event_id = key.partition(IDENTITY_SEPARATOR)
    return (
        f"conflict: an event with source {source!r} and id {event_id!r} but other content was received "
        "before; an event's (source, id) must name one usage"
    )


def _utc_free(about: list[Any]) -> list[Any]:
    """Times compared as instants, whichever way a reader labelled their zone."""
    return [value.replace(tzinfo=None) if isinstance(value, datetime) else value for value in about]


def _column(usage: pa.Table, name: str) -> pa.ChunkedArray:
    if name == "digest" and name not in usage.column_names:  # a frame from a worker older than digests
        return pa.chunked_array([pa.repeat(pa.scalar(0, pa.uint64()), usage.num_rows)])
    return _text(usage[name])


def _text(column: Any) -> Any:
    """Strings as plain ``string``: decoded frames hold string views (which few kernels take yet),
    polars writes large strings, and the engine answers binary."""
    if pa.types.is_string_view(column.type) or pa.types.is_binary(column.type) or pa.types.is_large_string(column.type):
        return column.cast(pa.string())
    return column
