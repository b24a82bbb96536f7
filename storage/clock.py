"""When stored rows say they were stored, and the instant a close may cut at."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime


class InsertClock:
    """The times stored events carry (``inserted_at``), and a reading of it that is safe to cut at.

    A write is stamped before it starts and seen when it ends, so ``now`` waits for a write under
    way: every event stamped at or before the time it returns is already visible. A period close
    bills the events stored by that time, and an invoice's drill-down shows exactly those.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()

    @contextmanager
    def writing(self) -> Iterator[datetime]:
        with self._lock:
            yield datetime.now(UTC)

    def now(self) -> datetime:
        with self._lock:
            return datetime.now(UTC)
