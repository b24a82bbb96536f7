"""Entry point of the sink on its own: ``python -m sinks.main``, beside a ClickHouse server.

With embedded chDB only one process may open the data directory, so the API process hosts the
sink instead (``METERLINE_SINK_IN_API``, the default); this refuses to start there.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

from meterline.settings import Settings

log = logging.getLogger("meterline.sink")


def main() -> None:
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")  # see api.main: before pyarrow loads
    from sinks.runner import SinkRunner, sink_of

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings()
    if settings.effective_clickhouse_dsn.startswith("chdb:"):
        raise SystemExit(
            "the store is embedded chDB, which one process opens: the API runs the sink "
            "(METERLINE_SINK_IN_API=true); point METERLINE_CLICKHOUSE_DSN at a ClickHouse server to run it alone"
        )
    runner = SinkRunner(lambda: sink_of(settings))
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    runner.start()
    log.info("the sink reads %s", settings.kafka_bootstrap)
    stopped.wait()
    runner.stop()


if __name__ == "__main__":
    main()
