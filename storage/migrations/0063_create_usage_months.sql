-- The months, as the days (migration 55): added to from what is added to the hours, so they are
-- the hours rolled up by construction, corrections included. A report by month reads them for
-- its whole months: a year of a customer's usage in a twelfth of its days' rows. Filled from
-- the days (emptied first, so a fill cut short runs again).
CREATE TABLE IF NOT EXISTS {database}.usage_months (
    customer_id String,
    month DateTime('UTC'),
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
PARTITION BY toYear(month)
ORDER BY (customer_id, month, resource_id, product, meter, dimension, unit, currency, base_divisor);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.usage_months_of_hours TO {database}.usage_months AS
SELECT customer_id, toStartOfMonth(hour) AS month, resource_id, product, meter, dimension, unit, currency,
    base_divisor, base_sum, base_max, latest, amount, amount_base, rated_rows, stored_until
FROM {database}.usage_hours;

TRUNCATE TABLE {database}.usage_months;

INSERT INTO {database}.usage_months (customer_id, month, resource_id, product, meter, dimension, unit, currency,
    base_divisor, base_sum, base_max, latest, amount, amount_base, rated_rows, stored_until)
SELECT customer_id, toStartOfMonth(day) AS month, resource_id, product, meter, dimension, unit, currency,
    base_divisor, sum(base_sum), max(base_max), max(latest), sum(amount), sum(amount_base), sum(rated_rows),
    max(stored_until)
FROM {database}.usage_days
GROUP BY customer_id, month, resource_id, product, meter, dimension, unit, currency, base_divisor;
