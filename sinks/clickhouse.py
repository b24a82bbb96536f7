"""Write accepted raw events and rated usage into ClickHouse (embedded chDB or a server)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import clickhouse_connect
import polars as pl
from clickhouse_connect.driver.client import Client

from meterline.settings import Settings
from schemas.clickhouse import RATED_USAGE, RAW_EVENTS, migrate
from schemas.rated import decode_rated
from sinks.base import FlushResult, Sink

RAW_INSERT_SETTINGS: dict[str, Any] = {
    "input_format_skip_unknown_fields": 1,
    "input_format_json_read_objects_as_strings": 1,
    "date_time_input_format": "best_effort",
}


def connect(settings: Settings) -> Client:
    """A client on the configured DSN, with the schema migrated; one per thread that uses it."""
    client = clickhouse_connect.get_client(dsn=settings.effective_clickhouse_dsn)
    migrate(client, settings.clickhouse_database)
    return client


class ClickHouseSink(Sink):
    """Buffers the accepted-events and rated-usage topics, then writes both tables in one flush."""

    def __init__(self, client: Client, settings: Settings) -> None:
        self._client = client
        self._database = settings.clickhouse_database
        self._accepted_topic = settings.topics.accepted
        self._rated_topic = settings.topics.rated
        self._raw: list[bytes] = []
        self._raw_rows = 0
        self._rated: list[pl.DataFrame] = []
        self._rated_rows = 0

    def add(self, topic: str, payload: bytes) -> None:
        if topic == self._accepted_topic:
            self._raw.append(payload)
            self._raw_rows += payload.count(b"\n") + 1
        elif topic == self._rated_topic:
            frame = decode_rated(payload)
            self._rated.append(frame)
            self._rated_rows += frame.height
        else:
            raise ValueError(f"the ClickHouse sink does not read topic {topic!r}")

    @property
    def buffered_rows(self) -> int:
        return self._raw_rows + self._rated_rows

    def flush(self) -> FlushResult:
        now = datetime.now(UTC)
        raw_rows, freshness = self._raw_rows, []
        if self._raw:
            self._client.raw_insert(
                f"{self._database}.{RAW_EVENTS}",
                insert_block=b"\n".join(self._raw),
                fmt="JSONEachRow",
                settings=RAW_INSERT_SETTINGS,
            )
        if self._rated:
            rated = pl.concat(self._rated).with_columns(inserted_at=pl.lit(now, dtype=pl.Datetime("ms", "UTC")))
            self._client.insert_arrow(f"{self._database}.{RATED_USAGE}", rated.to_arrow())
            freshness = [(now - end).total_seconds() for end in rated["usage_end"].unique().to_list()]
        result = FlushResult(raw_events=raw_rows, rated_rows=self._rated_rows, freshness_s=freshness)
        self._raw, self._raw_rows, self._rated, self._rated_rows = [], 0, [], 0
        return result
