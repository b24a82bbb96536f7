CREATE TABLE IF NOT EXISTS {database}.usage_by_day (
        customer_id String,
        day DateTime('UTC'),
        resource_id String,
        product LowCardinality(String),
        meter LowCardinality(String),
        dimension LowCardinality(String),
        unit LowCardinality(String),
        currency LowCardinality(String),
        base_divisor UInt32,
        base_sum Decimal(38, 12),
        base_max Decimal(38, 12),
        base_latest Decimal(38, 12),
        latest_at DateTime64(3, 'UTC'),
        amount Decimal(38, 12),
        rated_rows UInt64,
        stored_until DateTime64(3, 'UTC'),
        computed_at DateTime64(6, 'UTC')
    ) ENGINE = ReplacingMergeTree(computed_at)
    PARTITION BY toYYYYMM(day)
    ORDER BY (customer_id, day, resource_id, product, meter, dimension, unit, currency, base_divisor);
