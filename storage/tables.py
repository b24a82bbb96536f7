"""The names of meterline's ClickHouse tables, for the code that reads and writes them.

Their definitions are the migrations' (``storage/migrations``, summed up in ``SCHEMA.md``).
Exactly-once counting rests on two of them: ``usage_events`` keeps one row per accepted event
(a ReplacingMergeTree keyed by its source and id, within its customer, hour and resource, read
through ``FINAL``), its rated usage as a nested list; ``event_identities`` records each event's
identity, so that a copy is never written twice. The rollups ``usage_by_hour`` and
``usage_by_day`` are added to as events are written (``storage.rollups``).
"""

RAW_EVENTS = "raw_events"
RAW_MESSAGES = "raw_messages"
USAGE_EVENTS = "usage_events"
RATED_USAGE = "rated_usage"
USAGE_BY_HOUR = "usage_hours"
USAGE_BY_DAY = "usage_days"
USAGE_BY_MONTH = "usage_months"
INVOICES = "invoices"
INVOICE_LINES = "invoice_lines"
DELIVERIES = "invoice_deliveries"
CATALOG_ENTRIES = "catalog_entries"
STORED_MESSAGES = "stored_messages"
DEAD_LETTERS = "dead_letters"
API_KEYS = "api_keys"
READ_TOKENS = "read_tokens"
PORTAL_SIGN_OUTS = "portal_sign_outs"
AUDIT_LOG = "audit_log"
EVENT_IDENTITIES = "event_identities"
MIGRATIONS = "schema_migrations"
MIGRATION_LOCK = "schema_migration_lock"
NUMBERING_LOCK = "invoice_numbering_lock"
STORED_THROUGH = "stored_through"
CREDIT_GRANTS = "credit_grants"
CREDIT_ENTRIES = "credit_entries"
ALERT_RULES = "alert_rules"
ALERT_STATES = "alert_states"
ALERTS = "alerts"
WEBHOOK_ENDPOINTS = "webhook_endpoints"
WEBHOOK_DELIVERIES = "webhook_deliveries"
ENFORCEMENT = "enforcement"
TOP_UP_PLANS = "top_up_plans"
PAYMENTS = "payments"
PAYMENT_EVENTS = "payment_events"
SAVED_CARDS = "saved_cards"
PAYMENTS_LOCK = "payments_lock"
