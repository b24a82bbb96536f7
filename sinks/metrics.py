"""The sink's Prometheus figures, served by the API process that runs it."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ROWS_WRITTEN = Counter("meterline_sink_rows_written_total", "Rows written to ClickHouse", ["table"])
FLUSH_SECONDS = Histogram(
    "meterline_sink_flush_seconds",
    "Time to write one batch to ClickHouse and commit its offsets",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENTS_SEEN_BEFORE = Counter(
    "meterline_sink_events_seen_before_total",
    "Usage events whose identity was already stored: a repeat is counted once, a conflict dead-lettered",
    ["verdict"],
)
CONSUMER_LAG = Gauge("meterline_sink_consumer_lag_messages", "Messages not yet read by the sink", ["topic"])
FRESHNESS_SECONDS = Histogram(
    "meterline_freshness_seconds",
    "From the end of a usage interval to its rated row being queryable",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
RESTARTS = Counter("meterline_sink_restarts_total", "Sinks that failed and were made anew from the committed offsets")
