-- Card payments (billing/payments.py): each payment, as the latest row of its id (updated_at,
-- read with FINAL); each gateway event, kept once per gateway and event id, applied or refused
-- with the reason; the cards buyers saved, as the gateway's references only (no card data).
CREATE TABLE IF NOT EXISTS {database}.payments (
    payment_id String,
    purpose LowCardinality(String),
    method LowCardinality(String),
    holder_id String,
    issuer_id String,
    invoice_id String,
    gateway LowCardinality(String),
    currency LowCardinality(String),
    amount_minor Int64,
    created_at DateTime64(6, 'UTC'),
    updated_at DateTime64(6, 'UTC'),
    reference String,
    page_url String,
    state LowCardinality(String),
    refunded_minor Int64,
    note String
) ENGINE = ReplacingMergeTree(updated_at)
ORDER BY payment_id;

CREATE TABLE IF NOT EXISTS {database}.payment_events (
    gateway LowCardinality(String),
    event_id String,
    kind LowCardinality(String),
    payment_id String,
    reference String,
    amount_minor Int64,
    currency LowCardinality(String),
    at DateTime64(6, 'UTC'),
    refund_id String,
    reason String,
    received_at DateTime64(6, 'UTC'),
    refused String
) ENGINE = ReplacingMergeTree
ORDER BY (gateway, event_id);

CREATE TABLE IF NOT EXISTS {database}.saved_cards (
    holder_id String,
    gateway LowCardinality(String),
    customer_ref String,
    method_ref String,
    removed Bool,
    updated_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (holder_id, gateway);

ALTER TABLE {database}.invoices ADD COLUMN IF NOT EXISTS payment_reference String DEFAULT '';
