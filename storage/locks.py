"""Locks that hold across every process sharing a store, with nothing but ClickHouse.

ClickHouse creates a table name once: ``CREATE TABLE`` (without ``IF NOT EXISTS``) is the lock's
compare-and-set, and ``DROP TABLE`` gives it back. A lock older than ``stale_after`` was left by
a process that died while holding it, and is taken over.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError


@contextmanager
def held(client: Client, database: str, name: str, *, stale_after: timedelta, wait: timedelta) -> Iterator[None]:
    """Held by one process of all that share the store; the others wait for it, up to ``wait``."""
    lock = f"{database}.`{name}`"
    deadline = time.monotonic() + wait.total_seconds()
    while True:
        try:
            client.command(f"CREATE TABLE {lock} (held UInt8) ENGINE = Memory")
            break
        except DatabaseError as error:
            if "TABLE_ALREADY_EXISTS" not in str(error):
                raise
        if _age_s(client, database, name) > stale_after.total_seconds():
            client.command(f"DROP TABLE IF EXISTS {lock} SYNC")
        elif time.monotonic() > deadline:
            raise TimeoutError(f"another process has held {lock} for over {wait}; drop it if that process is gone")
        else:
            time.sleep(0.05)
    try:
        yield
    finally:
        client.command(f"DROP TABLE IF EXISTS {lock} SYNC")


def _age_s(client: Client, database: str, name: str) -> float:
    age = client.command(
        "SELECT now() - metadata_modification_time FROM system.tables "
        "WHERE database = {database:String} AND name = {name:String}",
        parameters={"database": database, "name": name},
    )
    return float(str(age)) if str(age).strip() else 0.0
