-- The days, as ``usage_hours`` (migration 49) and filled from the replaced ``usage_by_day``.
CREATE TABLE IF NOT EXISTS {database}.usage_days (
    customer_id String,
    day DateTime('UTC'),
    resource_id String,
    product LowCardinality(String),
    meter LowCardinality(String),
    dimension LowCardinality(String),
    unit LowCardinality(String),
    currency LowCardinality(String),
    base_divisor UInt32,
    base_sum SimpleAggregateFunction(sum, Decimal(38, 12)),
    base_max SimpleAggregateFunction(max, Decimal(38, 12)),
    latest SimpleAggregateFunction(max, Tuple(DateTime64(3, 'UTC'), Decimal(38, 12))),
    amount SimpleAggregateFunction(sum, Decimal(38, 12)),
    amount_base SimpleAggregateFunction(sum, Decimal(76, 24)),
    rated_rows SimpleAggregateFunction(sum, Int64),
    stored_until SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    base_latest Decimal(38, 12) ALIAS tupleElement(latest, 2),
    latest_at DateTime64(3, 'UTC') ALIAS tupleElement(latest, 1)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (customer_id, day, resource_id, product, meter, dimension, unit, currency, base_divisor);
TRUNCATE TABLE {database}.usage_days;
INSERT INTO {database}.usage_days (customer_id, day, resource_id, product, meter, dimension, unit, currency,
    base_divisor, base_sum, base_max, latest, amount, amount_base, rated_rows, stored_until)
SELECT customer_id, day, resource_id, product, meter, dimension, unit, currency, base_divisor,
    base_sum, base_max, (latest_at, base_latest), amount, amount_base, toInt64(rated_rows), stored_until
FROM {database}.usage_by_day FINAL;
