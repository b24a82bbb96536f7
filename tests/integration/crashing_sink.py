"""A sink process that is SIGKILLed right after its first write, before committing offsets.

``python -m tests.integration.crashing_sink`` with the test's METERLINE_* environment; it
prints how many usage events it wrote before dying.
"""

from __future__ import annotations

import os
import signal

from meterline.settings import Settings
from sinks.base import FlushResult
from sinks.clickhouse import ClickHouseSink
from sinks.consumer import SinkConsumer
from storage.clock import StoredThrough
from storage.connection import connect
from storage.received import ReceivedStore
from storage.usage_store import UsageStore


class KilledAfterWrite(ClickHouseSink):
    def flush(self) -> FlushResult:
        result = super().flush()
        if result.usage_events:
            print(result.usage_events, flush=True)  # noqa: T201
            os.kill(os.getpid(), signal.SIGKILL)
        return result


def main() -> None:
    settings = Settings()
    client = connect(settings)
    database = settings.clickhouse_database
    writer = settings.intake.name
    stores = (
        UsageStore(client, database, writer),
        ReceivedStore(client, database),
        StoredThrough(client, database, writer),
    )
    consumer = SinkConsumer(settings, KilledAfterWrite(*stores, settings))
    consumer.run()


if __name__ == "__main__":
    main()
