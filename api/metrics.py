"""The API process's own Prometheus figures (the sink's are in ``sinks/metrics.py``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

PUSHED_ACCEPTED = Counter("meterline_api_events_accepted_total", "Events accepted by POST /v1/events")
PUSHED_REJECTED = Counter("meterline_api_events_rejected_total", "Events refused by POST /v1/events")
PERIOD_CLOSE_FAILURES = Counter(
    "meterline_period_close_failures_total", "Automatic period closes that failed and will be retried"
)
DELIVERIES = Counter("meterline_invoice_deliveries_total", "Invoice email attempts by outcome", ["outcome"])
SOURCES_WITH_GAPS = Gauge(
    "meterline_sources_with_gaps", "Producers with messages sent and never stored (as of the last completeness check)"
)
INTAKE_BACKLOG = Gauge(
    "meterline_api_intake_backlog_messages", "Messages the intake accepted that the sink has not stored yet"
)
