CREATE TABLE IF NOT EXISTS {database}.invoice_lines (
        invoice_id String,
        revision UInt32,
        line_no UInt32,
        kind LowCardinality(String),
        description String,
        quantity Decimal(38, 12),
        unit LowCardinality(String),
        unit_price Decimal(38, 12),
        amount Decimal(38, 12),
        meter LowCardinality(String),
        dimension LowCardinality(String),
        adjusts_period String
    ) ENGINE = ReplacingMergeTree
    ORDER BY (invoice_id, revision, line_no);
