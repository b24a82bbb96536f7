CREATE TABLE IF NOT EXISTS {database}.usage_events (
        id String,
        type LowCardinality(String),
        source String,
        time DateTime64(3, 'UTC'),
        customer_id String,
        resource_id String,
        message_id String,
        offset UInt32,
        length UInt32,
        event String CODEC(ZSTD(3)),
        usage_start DateTime64(3, 'UTC'),
        usage_end DateTime64(3, 'UTC'),
        currency LowCardinality(String),
        rated Nested(
            product LowCardinality(String),
            meter LowCardinality(String),
            dimension LowCardinality(String),
            unit LowCardinality(String),
            quantity Decimal(38, 12),
            unit_price Decimal(38, 12),
            amount Decimal(38, 12)
        ),
        inserted_at DateTime64(3, 'UTC')
    ) ENGINE = ReplacingMergeTree
    PARTITION BY toYYYYMM(usage_start)
    ORDER BY (customer_id, toStartOfHour(usage_start), resource_id, id);
