"""A sink kept running: one that fails is closed and made anew, from the committed offsets.

What a failed sink had buffered was never committed, so the new one reads it again; storage
keeps one row per event however often it is written. The process around it (the API, when it
hosts the sink beside embedded chDB) goes on serving meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from meterline.settings import Settings
from sinks import metrics
from sinks.clickhouse import ClickHouseSink
from sinks.consumer import SinkConsumer
from storage.clock import StoredThrough
from storage.connection import connect
from storage.received import ReceivedStore
from storage.usage_store import UsageStore

log = logging.getLogger(__name__)
FIRST_PAUSE_S = 1.0
LONGEST_PAUSE_S = 30.0
HEALTHY_AFTER_S = 60.0
"""A sink that ran this long before failing starts again after the first pause, not a longer one."""


def sink_of(settings: Settings) -> SinkConsumer:
    """A sink on a client of its own, writing as the intake's name: what a process hosts."""
    client = connect(settings)
    database, writer = settings.clickhouse_database, settings.intake.name
    stores = UsageStore(client, database, writer), ReceivedStore(client, database)
    return SinkConsumer(settings, ClickHouseSink(*stores, StoredThrough(client, database, writer), settings))


class SinkRunner:
    def __init__(self, make: Callable[[], SinkConsumer]) -> None:
        self._make = make
        self._stopping = threading.Event()
        self._current: SinkConsumer | None = None
        self._thread = threading.Thread(target=self._run, name="clickhouse-sink", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, within_s: float = 30) -> None:
        self._stopping.set()
        if self._current is not None:
            self._current.stop()
        self._thread.join(timeout=within_s)

    @property
    def running(self) -> bool:
        """A sink is reading (or is about to be made again after a failure)."""
        return self._thread.is_alive()

    @property
    def stalled(self) -> bool:
        return self._current is not None and self._current.stalled

    def _run(self) -> None:
        pause = FIRST_PAUSE_S
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                self._current = self._make()
                if self._stopping.is_set():  # stopped while it was being made
                    self._current.stop()
                self._current.run()
                return
            except Exception:
                metrics.RESTARTS.inc()
                log.exception("the sink failed; a new one reads again from the committed offsets in %.0f s", pause)
            finally:
                self._current = None
            if time.monotonic() - started >= HEALTHY_AFTER_S:
                pause = FIRST_PAUSE_S
            self._stopping.wait(pause)
            pause = min(pause * 2, LONGEST_PAUSE_S)
