-- Prepaid credit (billing/credits.py). A grant is written once and never changed: its id is
-- derived from the holder and the caller's idempotency key, so a retried request writes the
-- same row. Every change to what grants hold is an entry, never changed either; an entry's id
-- is derived from what it settles, so a settlement retried after a lost answer writes the same
-- rows, and the ReplacingMergeTree keeps one of each (read with FINAL).
CREATE TABLE IF NOT EXISTS {database}.credit_grants (
    holder_id String,
    grant_id String,
    origin LowCardinality(String),
    currency LowCardinality(String),
    amount Decimal(38, 12),
    effective_at DateTime64(3, 'UTC'),
    expires_at Nullable(DateTime64(3, 'UTC')),
    priority Int32,
    scope Array(String),
    paid Bool,
    paid_amount Nullable(Decimal(38, 12)),
    idempotency_key String,
    request_digest String,
    created_by String,
    created_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY (holder_id, grant_id);

CREATE TABLE IF NOT EXISTS {database}.credit_entries (
    holder_id String,
    entry_id String,
    grant_id String,
    kind LowCardinality(String),
    amount Decimal(38, 12),
    at DateTime64(3, 'UTC'),
    reference String,
    recorded_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY (holder_id, entry_id);
