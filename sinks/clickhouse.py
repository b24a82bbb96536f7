"""Write received messages, accepted events and rated usage into ClickHouse (chDB or a server)."""

from __future__ import annotations

from datetime import UTC, datetime

import clickhouse_connect
import polars as pl
from clickhouse_connect.driver.client import Client

from meterline.settings import Settings
from schemas.clickhouse import RATED_USAGE, RAW_EVENTS, RAW_MESSAGES, migrate
from schemas.records import decode_frame, message_id
from sinks.base import FlushResult, Sink

# Replacing duplicates inside each inserted block costs ~40% of the insert; every read goes
# through FINAL (and background merges collapse duplicates too), so leave it to them.
INSERT_SETTINGS = {"optimize_on_insert": 0}


def connect(settings: Settings, *, migrate_schema: bool = True) -> Client:
    """A client on the configured DSN, with the schema migrated; one per thread that uses it.

    A process opening several clients migrates with the first and skips it for the others.
    """
    client = clickhouse_connect.get_client(dsn=settings.effective_clickhouse_dsn)
    if migrate_schema:
        migrate(client, settings.clickhouse_database)
    return client


class ClickHouseSink(Sink):
    """Buffers the events, accepted-events and rated-usage topics, then writes them in one flush.

    Messages of the events topic are kept whole, valid or not: an accepted event's JSON is read
    back from its message, and a refused one can be looked at as it came.
    """

    def __init__(self, client: Client, settings: Settings) -> None:
        self._client = client
        self._events_topic = settings.topics.events
        self._messages_table = f"{settings.clickhouse_database}.{RAW_MESSAGES}"
        self._raw_table = f"{settings.clickhouse_database}.{RAW_EVENTS}"
        self._rated_table = f"{settings.clickhouse_database}.{RATED_USAGE}"
        self._tables = {settings.topics.accepted: self._raw_table, settings.topics.rated: self._rated_table}
        self._buffers: dict[str, list[pl.DataFrame]] = {table: [] for table in self._tables.values()}
        self._messages: list[bytes] = []
        self._rows = 0

    @property
    def topics(self) -> list[str]:
        return [self._events_topic, *self._tables]

    def add(self, topic: str, payload: bytes) -> None:
        if topic == self._events_topic:
            self._messages.append(payload)
            self._rows += 1
            return
        if topic not in self._tables:
            raise ValueError(f"the ClickHouse sink does not read topic {topic!r}")
        frame = decode_frame(payload)
        self._buffers[self._tables[topic]].append(frame)
        self._rows += frame.height

    @property
    def buffered_rows(self) -> int:
        return self._rows

    def flush(self) -> FlushResult:
        now = datetime.now(UTC)
        written: dict[str, int] = {}
        freshness: list[float] = []
        if self._messages:
            messages = pl.DataFrame(
                {"message_id": [message_id(payload) for payload in self._messages], "payload": self._messages},
                schema={"message_id": pl.String, "payload": pl.Binary},
            ).with_columns(received_at=pl.lit(now, dtype=pl.Datetime("ms", "UTC")))
            self._client.insert_arrow(self._messages_table, messages.to_arrow(), settings=INSERT_SETTINGS)
            written[self._messages_table] = messages.height
            self._messages.clear()
        for table, frames in self._buffers.items():
            if not frames:
                continue
            rows = pl.concat(frames).with_columns(inserted_at=pl.lit(now, dtype=pl.Datetime("ms", "UTC")))
            self._client.insert_arrow(table, rows.to_arrow(), settings=INSERT_SETTINGS)
            written[table] = rows.height
            if table == self._rated_table:
                freshness = [(now - end).total_seconds() for end in rows["usage_end"].unique().to_list()]
            frames.clear()
        self._rows = 0
        return FlushResult(
            written.get(self._messages_table, 0),
            written.get(self._raw_table, 0),
            written.get(self._rated_table, 0),
            freshness,
        )
