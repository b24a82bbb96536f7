"""The events refused after they were accepted, as the sink stored them with their reasons."""

from __future__ import annotations

import threading
from typing import Any

import orjson
from clickhouse_connect.driver.client import Client

from storage.connection import as_utc
from storage.tables import DEAD_LETTERS


class DeadLetters:
    """Reads the refusals the sink stored; one lock: an embedded engine handle is not for concurrent use."""

    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self._table = f"{database}.{DEAD_LETTERS}"
        self._lock = threading.Lock()

    def latest(self, source: str | None, limit: int) -> list[dict[str, Any]]:
        """The latest refusals, newest first (of one source, if given): the event as it came, parsed."""
        with self._lock:
            rows = self._client.query(
                f"SELECT event_id, source, reason, refused_at, event FROM {self._table} FINAL "
                "WHERE {source:Nullable(String)} IS NULL OR source = {source:Nullable(String)} "
                "ORDER BY refused_at DESC, event_id LIMIT {limit:UInt32}",
                parameters={"source": source, "limit": limit},
            ).result_rows
        return [
            {"event_id": ident, "source": src, "reason": reason, "refused_at": as_utc(at), "event": orjson.loads(event)}
            for ident, src, reason, at, event in rows
        ]
