-- Exact rollups, kept in step by the sink (``storage.rollups``): recounted from ``usage_events``
-- for every (customer, start hour) a flush wrote, so an event written again is
-- still counted once. ``stored_until`` is the latest write among a row's events: a read
-- of what was stored by some time takes a later row's hour from the events instead.
CREATE TABLE IF NOT EXISTS {database}.usage_by_hour (
        customer_id String,
        hour DateTime('UTC'),
        resource_id String,
        product LowCardinality(String),
        meter LowCardinality(String),
        dimension LowCardinality(String),
        unit LowCardinality(String),
        currency LowCardinality(String),
        base_divisor UInt32,
        event_hour DateTime('UTC'),
        base_sum Decimal(38, 12),
        base_max Decimal(38, 12),
        base_latest Decimal(38, 12),
        latest_at DateTime64(3, 'UTC'),
        amount Decimal(38, 12),
        rated_rows UInt64,
        stored_until DateTime64(3, 'UTC'),
        computed_at DateTime64(6, 'UTC')
    ) ENGINE = ReplacingMergeTree(computed_at)
    PARTITION BY toYYYYMM(hour)
    ORDER BY (customer_id, hour, resource_id, product, meter, dimension, unit, currency, base_divisor,
        event_hour);
