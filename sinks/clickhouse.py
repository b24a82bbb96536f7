"""Write received messages, accepted events and rated usage into ClickHouse (chDB or a server)."""

from __future__ import annotations

from datetime import UTC, datetime

import clickhouse_connect
import polars as pl
from clickhouse_connect.driver.client import Client

from meterline.settings import Settings
from schemas.clickhouse import RAW_MESSAGES, USAGE_EVENTS, migrate
from schemas.records import TIMESTAMP, USAGE_EVENT_SCHEMA, decode_frame, message_id
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
    """Buffers the events and rated topics, then writes them in one flush.

    Messages of the events topic are kept whole, valid or not: an accepted event's JSON is read
    back from its message, and a refused one can be looked at as it came. Usage events are
    written first, since they are what the API shows.
    """

    def __init__(self, client: Client, settings: Settings) -> None:
        self._client = client
        self._events_topic, self._rated_topic = settings.topics.events, settings.topics.rated
        self._messages_table = f"{settings.clickhouse_database}.{RAW_MESSAGES}"
        self._usage_table = f"{settings.clickhouse_database}.{USAGE_EVENTS}"
        self._messages: list[bytes] = []
        self._usage: list[pl.DataFrame] = []
        self._rows = 0

    @property
    def topics(self) -> list[str]:
        return [self._events_topic, self._rated_topic]

    def add(self, topic: str, payload: bytes) -> None:
        if topic == self._events_topic:
            self._messages.append(payload)
            self._rows += 1
        elif topic == self._rated_topic:
            frame = decode_frame(payload)
            self._usage.append(frame)
            self._rows += frame.height
        else:
            raise ValueError(f"the ClickHouse sink does not read topic {topic!r}")

    @property
    def buffered_rows(self) -> int:
        return self._rows

    def flush(self) -> FlushResult:
        now = pl.lit(datetime.now(UTC), dtype=TIMESTAMP)
        usage = pl.concat(self._usage) if self._usage else pl.DataFrame(schema=USAGE_EVENT_SCHEMA)
        if usage.height:
            self._client.insert_arrow(
                self._usage_table, usage.with_columns(inserted_at=now).to_arrow(), settings=INSERT_SETTINGS
            )
        if self._messages:
            messages = pl.DataFrame(
                {"message_id": [message_id(payload) for payload in self._messages], "payload": self._messages},
                schema={"message_id": pl.String, "payload": pl.Binary},
            )
            self._client.insert_arrow(
                self._messages_table, messages.with_columns(received_at=now).to_arrow(), settings=INSERT_SETTINGS
            )
        written_at = datetime.now(UTC)
        result = FlushResult(
            raw_messages=len(self._messages),
            usage_events=usage.height,
            rated_rows=int(usage["rated.meter"].list.len().sum()),
            freshness_s=[(written_at - end).total_seconds() for end in usage["usage_end"].unique().to_list()],
        )
        self._messages, self._usage, self._rows = [], [], 0
        return result
