"""When stored rows say they were stored, and the instant a close may cut at, across processes.

A sink stamps a write (``inserted_at``) before it starts and, once it is visible, records that
it has stored everything stamped by then (``stored_through``, one row per sink). A sink with
nothing to write records the present now and then, so its mark keeps up (each sink's row is
overwritten: a key-value table). The cutoff is the
earliest mark of the sinks heard from lately: every event stamped at or before it is already
visible, whichever process wrote it, so a period close bills the events stored by that time
and an invoice's drill-down shows exactly those. A sink silent for ``GONE_AFTER`` is taken to
be gone (a write under way would have ended, or failed, long before).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver.client import Client

from storage.connection import as_utc, to_the_millisecond
from storage.tables import STORED_THROUGH

GONE_AFTER = timedelta(minutes=10)
IDLE_MARK_EVERY_S = 1.0


class StoredThrough:
    """One sink's mark (``writing``, ``idle``) and everyone's cutoff (``now``)."""

    def __init__(self, client: Client, database: str, writer: str = "") -> None:
        self._client = client
        self._table = f"{database}.{STORED_THROUGH}"
        self._writer = writer
        self._lock = threading.Lock()
        self._last_mark = 0.0

    @contextmanager
    def writing(self) -> Iterator[datetime]:
        """A write's stamp, to the millisecond as stored; recorded as stored through once the write
        is done (not if it fails)."""
        stamp = to_the_millisecond(datetime.now(UTC))
        yield stamp
        self._mark(stamp)

    def idle(self) -> None:
        """Nothing is being written: stored through now (recorded once a second at most)."""
        if time.monotonic() - self._last_mark >= IDLE_MARK_EVERY_S:
            self._mark(to_the_millisecond(datetime.now(UTC)))

    def now(self) -> datetime:
        """The cutoff: every event stamped at or before it is visible (the present, if no sink
        has been heard from lately: then nothing is being written)."""
        query = (
            f"SELECT min(stored_through), count() FROM {self._table} "
            "WHERE recorded_at > {present:DateTime64(6, 'UTC')} - INTERVAL {gone:UInt32} SECOND"
        )
        present = datetime.now(UTC)
        with self._lock:
            through, writers = self._client.query(
                query, parameters={"present": present, "gone": int(GONE_AFTER.total_seconds())}
            ).result_rows[0]
        return as_utc(through) if writers else present

    def _mark(self, stamp: datetime) -> None:
        with self._lock:
            self._client.insert(
                self._table,
                [[self._writer, stamp, datetime.now(UTC)]],
                column_names=["writer", "stored_through", "recorded_at"],
            )
        self._last_mark = time.monotonic()
