"""The audit log's rows: appended once, read by time and key (``api.access.audit`` writes them)."""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from storage.connection import as_utc
from storage.tables import AUDIT_LOG

log = logging.getLogger(__name__)
_COLUMNS = ["at", "key_id", "role", "party_id", "method", "route", "path", "status", "before", "after"]


class AuditLog:
    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self._table = f"{database}.{AUDIT_LOG}"
        self._lock = threading.Lock()

    def append(self, row: dict[str, Any]) -> None:
        with self._lock:
            self._client.insert(self._table, [[row[name] for name in _COLUMNS]], column_names=_COLUMNS)

    def append_after_change(self, row: dict[str, Any]) -> None:
        """The row of a change already made: losing it must be loud (logged), not undo the change."""
        try:
            self.append(row)
        except Exception:
            log.exception("could not write the audit row of %s %s", row["method"], row["path"])

    def entries(self, start: datetime, end: datetime, key_id: str | None, limit: int) -> list[dict[str, Any]]:
        where = "at >= {start:DateTime64(6, 'UTC')} AND at < {end:DateTime64(6, 'UTC')}"
        if key_id is not None:
            where += " AND key_id = {key_id:String}"
        query = f"SELECT * FROM {self._table} WHERE {where} ORDER BY at LIMIT {{limit:UInt32}}"
        parameters = {"start": start, "end": end, "key_id": key_id, "limit": limit}
        with self._lock:
            rows = list(self._client.query(query, parameters=parameters).named_results())
        return [
            {**row, "at": as_utc(row["at"]), "before": _parsed(row["before"]), "after": _parsed(row["after"])}
            for row in rows
        ]


def encoded(value: Any) -> str:
    """A noted state as a row keeps it: JSON with sorted keys; None as empty."""
    return "" if value is None else json.dumps(value, default=str, sort_keys=True)


def _parsed(text: str) -> Any:
    return json.loads(text) if text else None
