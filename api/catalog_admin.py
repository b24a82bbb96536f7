"""The catalog's one writer: a change is checked against the whole catalog, stored, then published.

At the first start the store is seeded from the YAML file (``METERLINE_CATALOG``); from then on
the stored entries are the catalog and the file is not read again. Every start republishes the
current entries to the compacted topic, so a broker that lost its data (the embedded one keeps
it in memory) gets the catalog back.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from billing.adapters.catalog_file import load_catalog
from billing.adapters.clickhouse_catalog import CatalogStore
from billing.adapters.kafka_catalog import CatalogPublisher
from billing.catalog import Catalog
from billing.catalog_entries import Entry, EntryKind, assemble, entries_of, parse_entry
from billing.scope import Scope
from meterline.exceptions import Forbidden, UnknownEntry


class CatalogAdmin:
    def __init__(self, store: CatalogStore, publisher: CatalogPublisher, seed: Path) -> None:
        self._store = store
        self._publisher = publisher
        self._lock = threading.Lock()
        entries = store.current() or store.append(entries_of(load_catalog(seed)), datetime.now(UTC))
        self._entries = {entry.key: entry for entry in entries}
        self.catalog: Catalog = assemble(entries)
        publisher.publish(entries)

    def entry(self, scope: Scope, kind: EntryKind, entry_id: str) -> Entry:
        entry = self._entries.get(Entry(kind, entry_id, None).key)
        if entry is None or entry.document is None or not scope.sees_entry(kind, entry.document):
            raise UnknownEntry(f"no {kind.value} {entry_id!r} in the catalog")
        return entry

    def entries(self, scope: Scope, kind: EntryKind | None = None) -> list[Entry]:
        """The live entries the scope sees, of one kind or all."""
        return [
            e
            for e in self._entries.values()
            if (kind is None or e.kind is kind) and e.document is not None and scope.sees_entry(e.kind, e.document)
        ]

    def put(self, scope: Scope, kind: EntryKind, entry_id: str, document: dict[str, Any]) -> tuple[Entry | None, Entry]:
        """Create or replace an entry (a new version); refused if the catalog would not hold together.

        Returns the entry it replaced (None if new) and the new one. A tenant writes only what is
        its own before and after: a partner cannot take another partner's customer, nor give
        one of its own away."""
        change = parse_entry(kind, entry_id, document)
        before = self._entries.get(change.key)
        if before is not None and before.document is not None:
            self.entry(scope, kind, entry_id)
            _check_writable(scope, kind, before.document)
        _check_writable(scope, kind, change.document or {})
        return (before if before and before.document is not None else None), self._apply(change)

    def delete(self, scope: Scope, kind: EntryKind, entry_id: str) -> tuple[Entry, Entry]:
        before = self.entry(scope, kind, entry_id)
        _check_writable(scope, kind, before.document or {})
        return before, self._apply(Entry(kind, entry_id, None))

    def _apply(self, change: Entry) -> Entry:
        with self._lock:
            catalog = assemble({**self._entries, change.key: change}.values())
            (stored,) = self._store.append([change], datetime.now(UTC))
            self._publisher.publish([stored])
            self._entries[stored.key] = stored
            self.catalog = catalog
            return stored


def _check_writable(scope: Scope, kind: EntryKind, document: dict[str, Any]) -> None:
    if not scope.may_write_entry(kind, document):
        raise Forbidden(f"this key may not write this {kind.value}")
