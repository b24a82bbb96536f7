"""Write received messages, accepted events and rated usage into ClickHouse (chDB or a server)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import clickhouse_connect
import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client

from meterline.settings import Settings
from schemas.clickhouse import RAW_MESSAGES, USAGE_EVENTS, migrate
from schemas.records import decode_frame, message_id
from sinks.base import FlushResult, Sink

# Replacing duplicates inside each inserted block costs ~40% of the insert; every read goes
# through FINAL (and background merges collapse duplicates too), so leave it to them.
INSERT_SETTINGS = {"optimize_on_insert": 0}
INSERTED_AT = pa.timestamp("ms", tz="UTC")


def connect(settings: Settings, *, migrate_schema: bool = True) -> Client:
    """A client on the configured DSN, with the schema migrated; one per thread that uses it.

    A process opening several clients migrates with the first and skips it for the others.
    """
    client = clickhouse_connect.get_client(dsn=settings.effective_clickhouse_dsn)
    if migrate_schema:
        migrate(client, settings.clickhouse_database)
    return client


class InsertClock:
    """The times stored events carry (``inserted_at``), and a reading of it that is safe to cut at.

    A write is stamped before it starts and seen when it ends, so ``now`` waits for a write under
    way: every event stamped at or before the time it returns is already visible. A period close
    bills the events stored by that time, and an invoice's drill-down shows exactly those.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()

    @contextmanager
    def writing(self) -> Iterator[datetime]:
        with self._lock:
            yield datetime.now(UTC)

    def now(self) -> datetime:
        with self._lock:
            return datetime.now(UTC)


class ClickHouseSink(Sink):
    """Buffers the events and rated topics, then writes them in one flush.

    Messages of the events topic are kept whole, valid or not: an accepted event's JSON is read
    back from its message, and a refused one can be looked at as it came. Usage events are
    written first, since they are what the API shows.
    """

    def __init__(self, client: Client, settings: Settings, clock: InsertClock | None = None) -> None:
        self._client = client
        self._clock = clock or InsertClock()
        self._events_topic, self._rated_topic = settings.topics.events, settings.topics.rated
        self._messages_table = f"{settings.clickhouse_database}.{RAW_MESSAGES}"
        self._usage_table = f"{settings.clickhouse_database}.{USAGE_EVENTS}"
        self._messages: list[bytes] = []
        self._usage: list[pa.Table] = []
        self._rows = 0
        self._bytes = 0

    @property
    def topics(self) -> list[str]:
        return [self._events_topic, self._rated_topic]

    def add(self, topic: str, payload: bytes) -> None:
        if topic == self._events_topic:
            self._messages.append(payload)
            self._rows += 1
            self._bytes += len(payload)
        elif topic == self._rated_topic:
            table = decode_frame(payload)
            self._usage.append(table)
            self._rows += table.num_rows
            self._bytes += table.nbytes  # decoded, some five times the compressed frame
        else:
            raise ValueError(f"the ClickHouse sink does not read topic {topic!r}")

    @property
    def buffered_rows(self) -> int:
        return self._rows

    @property
    def buffered_bytes(self) -> int:
        return self._bytes

    def flush(self) -> FlushResult:
        usage = pa.concat_tables(self._usage) if self._usage else None
        with self._clock.writing() as now:
            if usage is not None:
                inserted_at = _in_every_row(now, usage.num_rows)
                self._client.insert_arrow(
                    self._usage_table, usage.append_column("inserted_at", inserted_at), settings=INSERT_SETTINGS
                )
        if self._messages:
            messages = pa.table(
                {
                    "message_id": [message_id(payload) for payload in self._messages],
                    "payload": pa.array(self._messages, pa.binary()),
                    "received_at": _in_every_row(now, len(self._messages)),
                }
            )
            self._client.insert_arrow(self._messages_table, messages, settings=INSERT_SETTINGS)
        written_at = datetime.now(UTC)
        result = FlushResult(
            raw_messages=len(self._messages),
            usage_events=0 if usage is None else usage.num_rows,
            rated_rows=0 if usage is None else _rated_rows(usage),
            freshness_s=[] if usage is None else _seconds_since_end(usage, written_at),
        )
        self._messages, self._usage, self._rows, self._bytes = [], [], 0, 0
        return result


def _in_every_row(written: datetime, rows: int) -> pa.Array:
    """The flush's time as a column: what ``inserted_at`` and ``received_at`` hold."""
    return pa.repeat(pa.scalar(written, type=INSERTED_AT), rows)


def _rated_rows(usage: pa.Table) -> int:
    return int(pc.sum(pc.list_value_length(usage["rated.meter"])).as_py() or 0)


def _seconds_since_end(usage: pa.Table, written_at: datetime) -> list[float]:
    """How long ago each distinct interval end of the written events was, when they were written."""
    return [(written_at - end).total_seconds() for end in pc.unique(usage["usage_end"]).to_pylist()]
