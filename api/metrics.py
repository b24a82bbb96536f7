"""The API process's own Prometheus figures (the sink's are in ``sinks/metrics.py``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
CREDIT_PASS_SECONDS = Histogram(
    "meterline_credit_pass_seconds",
    "One pass over prepaid credit: settlement, alerts, enforcement and top-ups",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16),
)
ALERTS_FIRED = Counter("meterline_credit_alerts_fired_total", "Credit alerts fired (one per crossing)")
ALERT_DELIVERIES = Counter(
    "meterline_alert_deliveries_total",
    "Alert and enforcement sends by destination and outcome",
    ["destination", "outcome"],
)
