-- Rollups that are added to, never rewritten: each figure is a simple aggregate (a sum, or the
-- highest, or the latest as the highest (time, quantity) pair), so rows of one key merge into
-- one at read (``FINAL``) and in the background, and writing a flush's figures is an insert.
-- ``rated_rows`` is signed: a correction (``storage.rollups``) may take rows back. Filled from
-- the replaced ``usage_by_hour`` (the fill is emptied first, so a fill cut short runs again).
CREATE TABLE IF NOT EXISTS {database}.usage_hours (
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
PARTITION BY toYYYYMM(hour)
ORDER BY (customer_id, hour, resource_id, product, meter, dimension, unit, currency, base_divisor, event_hour);
TRUNCATE TABLE {database}.usage_hours;
INSERT INTO {database}.usage_hours (customer_id, hour, resource_id, product, meter, dimension, unit, currency,
    base_divisor, event_hour, base_sum, base_max, latest, amount, amount_base, rated_rows, stored_until)
SELECT customer_id, hour, resource_id, product, meter, dimension, unit, currency, base_divisor, event_hour,
    base_sum, base_max, (latest_at, base_latest), amount, amount_base, toInt64(rated_rows), stored_until
FROM {database}.usage_by_hour FINAL;
