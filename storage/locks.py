"""Locks that hold across every process sharing a store, with nothing but ClickHouse.

ClickHouse creates a table name once: ``CREATE TABLE`` (without ``IF NOT EXISTS``) is the lock's
compare-and-set, and ``DROP TABLE`` gives it back. The table's comment names its holder (host and
process id). A lock whose holder was a process of this host that is gone (killed while holding
it) is taken over at once; one older than ``stale_after`` was left by a process elsewhere that
died while holding it, and is taken over too.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

HOLDER = re.compile(r"(?P<host>[A-Za-z0-9.-]{1,253}):(?P<pid>[0-9]{1,10})")


@contextmanager
def held(client: Client, database: str, name: str, *, stale_after: timedelta, wait: timedelta) -> Iterator[None]:
    """Held by one process of all that share the store; the others wait for it, up to ``wait``."""
    lock = f"{database}.`{name}`"
    deadline = time.monotonic() + wait.total_seconds()
    while True:
        try:
            client.command(f"CREATE TABLE {lock} (held UInt8) ENGINE = Memory COMMENT '{_this_process()}'")
            break
        except DatabaseError as error:
            if "TABLE_ALREADY_EXISTS" not in str(error):
                raise
        age_s, holder = _age_and_holder(client, database, name)
        if _gone(holder) or age_s > stale_after.total_seconds():
            client.command(f"DROP TABLE IF EXISTS {lock} SYNC")
        elif time.monotonic() > deadline:
            raise TimeoutError(f"another process has held {lock} for over {wait}; drop it if that process is gone")
        else:
            time.sleep(0.05)
    try:
        yield
    finally:
        client.command(f"DROP TABLE IF EXISTS {lock} SYNC")


def _this_process() -> str:
    """``host:pid``, or empty when the host's name is not one a comment holds as it is."""
    host = socket.gethostname()
    return f"{host}:{os.getpid()}" if HOLDER.fullmatch(f"{host}:{os.getpid()}") else ""


def _gone(holder: str) -> bool:
    """Whether the holder was a process of this host that no longer runs."""
    found = HOLDER.fullmatch(holder)
    if found is None or found["host"] != socket.gethostname() or int(found["pid"]) == os.getpid():
        return False
    try:
        os.kill(int(found["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


def _age_and_holder(client: Client, database: str, name: str) -> tuple[float, str]:
    row = client.query(
        "SELECT now() - metadata_modification_time, comment FROM system.tables "
        "WHERE database = {database:String} AND name = {name:String}",
        parameters={"database": database, "name": name},
    ).result_rows
    return (float(row[0][0]), str(row[0][1])) if row else (0.0, "")
