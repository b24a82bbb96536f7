-- The days, added to as the hours are (migration 51).
CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.usage_days_of_events TO {database}.usage_days AS
SELECT customer_id, toStartOfDay(rated.usage_start) AS day, resource_id, rated.product AS product,
    rated.meter AS meter, rated.dimension AS dimension, rated.unit AS unit, currency,
    rated.base_divisor AS base_divisor,
    sum(rated.base_quantity) AS base_sum, max(rated.base_quantity) AS base_max,
    max((rated.usage_start, rated.base_quantity)) AS latest, sum(rated.amount) AS amount,
    sum(if(rated.meter IN ('xaas_peak_units', 'xaas_latest_units'), toDecimal256(0, 24),
        toDecimal256(rated.base_quantity, 12) * rated.unit_price)) AS amount_base,
    toInt64(count()) AS rated_rows, max(inserted_at) AS stored_until
FROM {database}.usage_events ARRAY JOIN rated
GROUP BY customer_id, day, resource_id, product, meter, dimension, unit, currency, base_divisor;
