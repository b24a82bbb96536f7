"""The stage's Prometheus figures, served by each worker on its own port."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_IN = Counter("meterline_pipeline_events_in_total", "Events read from the events topic")
EVENTS_REJECTED = Counter("meterline_pipeline_events_rejected_total", "Events sent to the dead-letter topic")
EVENTS_DUPLICATE = Counter("meterline_pipeline_events_duplicate_total", "Events dropped as already seen")
RATED_ROWS = Counter("meterline_pipeline_rated_rows_total", "Rated usage rows published")
BATCH_SECONDS = Histogram(
    "meterline_pipeline_batch_seconds",
    "Time to validate, meter and rate one batch of messages",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
CATALOG_UPDATES = Counter(
    "meterline_pipeline_catalog_updates_total", "Catalog changes taken from the catalog topic after start-up"
)
CATALOG_LOADED = Gauge("meterline_pipeline_catalog_loaded", "1 once the worker has read the whole catalog topic")
CONSUMER_LAG = Gauge(
    "meterline_pipeline_consumer_lag_messages",
    "Messages of the events topic after the last one this worker read, per assigned partition",
    ["partition"],
)
