"""Catalog entries in ClickHouse: append-only, one row per version, so history is never rewritten.

The current catalog is each entry's latest version; ``as_of`` reads it as it stood at an
earlier instant. Writes go through one lock: the API process is the catalog's only writer.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from billing.catalog_entries import Entry, EntryKind
from storage.tables import CATALOG_ENTRIES

COLUMNS = ["kind", "id", "version", "document", "deleted", "recorded_at"]


class CatalogStore:
    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self._table = f"{database}.{CATALOG_ENTRIES}"
        self._lock = threading.RLock()

    def current(self, as_of: datetime | None = None) -> list[Entry]:
        """Each entry's latest version (recorded at or before ``as_of``), deletions included."""
        condition = "recorded_at <= {as_of:DateTime64(3, 'UTC')}" if as_of else "1"
        query = (
            "SELECT kind, id, argMax(version, version), argMax(document, version), argMax(deleted, version) "
            f"FROM {self._table} WHERE {condition} GROUP BY kind, id ORDER BY kind, id"
        )
        with self._lock:
            rows = self._client.query(query, parameters={"as_of": as_of}).result_rows
        return [
            _entry(kind, entry_id, version, document, deleted) for kind, entry_id, version, document, deleted in rows
        ]

    def history(self, kind: EntryKind, entry_id: str) -> list[tuple[Entry, datetime]]:
        query = (
            f"SELECT kind, id, version, document, deleted, recorded_at FROM {self._table} "
            "WHERE kind = {kind:String} AND id = {id:String} ORDER BY version"
        )
        with self._lock:
            rows = self._client.query(query, parameters={"kind": kind.value, "id": entry_id}).result_rows
        return [(_entry(*row[:5]), row[5]) for row in rows]

    def append(self, entries: list[Entry], recorded_at: datetime) -> list[Entry]:
        """Store each entry as its next version; returns them with their version numbers."""
        with self._lock:
            latest = {(e.kind, e.id): e.version for e in self.current()}
            versioned = [Entry(e.kind, e.id, e.document, latest.get((e.kind, e.id), 0) + 1) for e in entries]
            rows: list[list[Any]] = [
                [e.kind.value, e.id, e.version, json.dumps(e.document or {}), e.document is None, recorded_at]
                for e in versioned
            ]
            if rows:
                self._client.insert(self._table, rows, column_names=COLUMNS)
            return versioned


def _entry(kind: str, entry_id: str, version: int, document: str, deleted: bool) -> Entry:
    return Entry(EntryKind(kind), entry_id, None if deleted else json.loads(document), int(version))
