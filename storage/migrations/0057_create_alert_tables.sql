-- Credit alerts (billing/alerts.py), the webhook endpoints they are sent to, each delivery, and
-- each customer's enforcement status. Rules, endpoints, rule states, deliveries and statuses are
-- rows replaced by a later version (``changed_at``, read with FINAL); an alert is written once,
-- its id derived from its rule, its customer and which crossing it is, so an evaluation redone
-- after a crash writes the same alert.
CREATE TABLE IF NOT EXISTS {database}.alert_rules (
    rule_id String,
    owner_id String,
    target_kind LowCardinality(String),
    target_id String,
    condition LowCardinality(String),
    threshold Decimal(38, 12),
    deleted Bool,
    created_by String,
    changed_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(changed_at)
ORDER BY rule_id;

CREATE TABLE IF NOT EXISTS {database}.alert_states (
    rule_id String,
    customer_id String,
    firing Bool,
    crossings UInt32,
    changed_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(changed_at)
ORDER BY (rule_id, customer_id);

CREATE TABLE IF NOT EXISTS {database}.alerts (
    alert_id String,
    rule_id String,
    customer_id String,
    condition LowCardinality(String),
    reason String,
    payload String,
    fired_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY (customer_id, alert_id);

CREATE TABLE IF NOT EXISTS {database}.webhook_endpoints (
    endpoint_id String,
    owner_id String,
    url String,
    secrets Array(String),
    secrets_until Array(Nullable(DateTime64(3, 'UTC'))),
    deleted Bool,
    created_by String,
    changed_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(changed_at)
ORDER BY endpoint_id;

CREATE TABLE IF NOT EXISTS {database}.webhook_deliveries (
    delivery_id String,
    endpoint_id String,
    message_id String,
    customer_id String,
    body String,
    status LowCardinality(String),
    attempts UInt32,
    next_attempt_at DateTime64(3, 'UTC'),
    last_error String,
    updated_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(updated_at)
ORDER BY delivery_id;

CREATE TABLE IF NOT EXISTS {database}.enforcement (
    customer_id String,
    status LowCardinality(String),
    reason String,
    changed_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(changed_at)
ORDER BY customer_id;
