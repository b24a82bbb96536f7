CREATE TABLE IF NOT EXISTS {database}.rated_usage (
        event_id String,
        event_type LowCardinality(String),
        customer_id String,
        resource_id String,
        product LowCardinality(String),
        meter LowCardinality(String),
        dimension LowCardinality(String),
        unit LowCardinality(String),
        usage_start DateTime64(3, 'UTC'),
        usage_end DateTime64(3, 'UTC'),
        quantity Decimal(38, 12),
        unit_price Decimal(38, 12),
        amount Decimal(38, 12),
        currency LowCardinality(String),
        inserted_at DateTime64(3, 'UTC')
    ) ENGINE = ReplacingMergeTree
    PARTITION BY toYYYYMM(usage_start)
    ORDER BY (customer_id, toStartOfHour(usage_start), resource_id, meter, dimension, event_id);
