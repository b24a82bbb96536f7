"""Gaps and stored hours of each producer's numbered messages, read from ``stored_messages``."""

from __future__ import annotations

import threading
from datetime import datetime

from clickhouse_connect.driver.client import Client

from billing.completeness import Gap, StoredHour
from storage.connection import as_utc
from storage.tables import STORED_MESSAGES

# One row per message number: the copy that counted its events, and when it was first stored.
_MESSAGES = """
    SELECT producer, seq, max(events) AS new_events,
        minIf(first_usage, events > 0) AS first_new_usage, maxIf(last_usage, events > 0) AS last_new_usage,
        min(stored_at) AS first_stored_at
    FROM {table}
    GROUP BY producer, seq
"""


class Completeness:
    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self._table = f"{database}.{STORED_MESSAGES}"
        self._lock = threading.Lock()  # an embedded engine handle is not for concurrent use

    def gaps(self) -> list[Gap]:
        """Every run of numbers missing below a producer's highest stored one, with the usage of
        the stored messages around it (a number missing before the first stored one has none
        before it)."""
        query = f"""
            SELECT producer, previous_seq + 1, seq - 1, previous_last, first_new_usage
            FROM (
                SELECT producer, seq, first_new_usage,
                    lagInFrame(seq) OVER by_number AS previous_seq,
                    lagInFrame(last_new_usage) OVER by_number AS previous_last
                FROM ({_MESSAGES.format(table=self._table)})
                WINDOW by_number AS (PARTITION BY producer ORDER BY seq ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
            )
            WHERE seq > previous_seq + 1
            ORDER BY producer, seq
        """
        with self._lock:
            rows = self._client.query(query).result_rows
        return [
            Gap(producer, int(first), int(last), _utc(after), _utc(before))
            for producer, first, last, after, before in rows
        ]

    def stored_hours(self, start: datetime, end: datetime) -> list[StoredHour]:
        """Each producer's hours in [start, end) with stored usage, and when the last of it came."""
        query = f"""
            SELECT producer, hour, max(first_stored_at)
            FROM (
                SELECT producer, first_stored_at, toStartOfHour(assumeNotNull(first_new_usage)) AS first_hour,
                    toStartOfHour(assumeNotNull(last_new_usage) - toIntervalMillisecond(1)) AS last_hour,
                    arrayJoin(arrayMap(
                        n -> first_hour + toIntervalHour(n),
                        range(toUInt32(dateDiff('hour', first_hour, last_hour) + 1))
                    )) AS hour
                FROM ({_MESSAGES.format(table=self._table)})
                WHERE new_events > 0 AND last_new_usage > {{start:DateTime64(3, 'UTC')}}
                    AND first_new_usage < {{end:DateTime64(3, 'UTC')}}
            )
            WHERE hour >= {{start:DateTime64(3, 'UTC')}} AND hour < {{end:DateTime64(3, 'UTC')}}
            GROUP BY producer, hour
            ORDER BY producer, hour
        """
        with self._lock:
            rows = self._client.query(query, parameters={"start": start, "end": end}).result_rows
        return [StoredHour(producer, as_utc(hour), as_utc(stored)) for producer, hour, stored in rows]


def _utc(value: datetime | None) -> datetime | None:
    return as_utc(value) if value is not None else None
