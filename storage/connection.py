"""Clients on the configured ClickHouse (chDB in process, or a server over HTTP): one settings
object selects which, and every statement is the same on both."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError
from clickhouse_connect.driver.query import QueryResult

from meterline.settings import Settings
from storage.schema import migrate

StoreUnavailable = OperationalError
"""What a call raises when the engine does not answer (a server down, a connection lost)."""


def connect(settings: Settings, *, migrate_schema: bool = True) -> Client:
    """A client on the configured DSN, with the schema migrated; one per thread that uses it.

    A process opening several clients migrates with the first and skips it for the others.
    """
    dsn = settings.effective_clickhouse_dsn
    # a rollup recount names thousands of groups: in a request body, not its URL
    if dsn.startswith("chdb:"):
        client = clickhouse_connect.get_client(dsn=dsn)
    else:
        client = clickhouse_connect.get_client(dsn=dsn, form_encode_query_params=True)
    if migrate_schema:
        migrate(client, settings.clickhouse_database)
    return client


class ClientPool:
    """Clients for readers that run side by side: a query takes one for as long as it runs, so
    the engine serves concurrent panels in parallel and no reader waits on another's client.
    Clients are made as they are first needed, up to ``size``; a query beyond that waits."""

    def __init__(self, make: Callable[[], Client], size: int) -> None:
        self._make = make
        self._idle: list[Client] = []
        self._free = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()

    @contextmanager
    def client(self) -> Iterator[Client]:
        with self._free:
            with self._lock:
                client = self._idle.pop() if self._idle else None
            if client is None:
                client = self._make()
            try:
                yield client
            finally:
                with self._lock:
                    self._idle.append(client)

    def query(self, query: str, parameters: dict[str, Any] | None = None) -> QueryResult:
        with self.client() as client:
            return client.query(query, parameters=parameters)


def to_the_millisecond(at: datetime) -> datetime:
    """``at`` as storage keeps it (DateTime64(3)): what is checked before a write is what is read back."""
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def as_utc(value: datetime) -> datetime:
    """ClickHouse (chDB at least) hands back naive UTC timestamps; say so explicitly."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)
