CREATE TABLE IF NOT EXISTS {database}.invoice_deliveries (
        invoice_id String,
        recipient String,
        status LowCardinality(String),
        attempts UInt32,
        last_error String,
        next_attempt_at DateTime64(3, 'UTC'),
        updated_at DateTime64(3, 'UTC')
    ) ENGINE = ReplacingMergeTree(updated_at)
    ORDER BY invoice_id;
