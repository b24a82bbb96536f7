CREATE TABLE IF NOT EXISTS {database}.raw_events (
        id String,
        type LowCardinality(String),
        source String,
        time DateTime64(3, 'UTC'),
        customer_id String,
        resource_id String,
        event String CODEC(ZSTD(3)),
        inserted_at DateTime64(3, 'UTC')
    ) ENGINE = ReplacingMergeTree
    PARTITION BY toYYYYMM(time)
    ORDER BY (customer_id, id);
