-- Every block of events written adds its figures to the hours, in the same insert: the cost of
-- keeping the rollups grows with what a flush writes, never with what an hour already holds.
-- The sink writes an event once (``storage.identities``); what a crash could still make it
-- write twice is corrected from the events (``storage.rollups``). A level's rows are worth
-- nothing until the close prices the period's figure.
CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.usage_hours_of_events TO {database}.usage_hours AS
SELECT customer_id, toStartOfHour(rated.usage_start) AS hour, resource_id, rated.product AS product,
    rated.meter AS meter, rated.dimension AS dimension, rated.unit AS unit, currency,
    rated.base_divisor AS base_divisor, toStartOfHour(usage_start) AS event_hour,
    sum(rated.base_quantity) AS base_sum, max(rated.base_quantity) AS base_max,
    max((rated.usage_start, rated.base_quantity)) AS latest, sum(rated.amount) AS amount,
    sum(if(rated.meter IN ('xaas_peak_units', 'xaas_latest_units'), toDecimal256(0, 24),
        toDecimal256(rated.base_quantity, 12) * rated.unit_price)) AS amount_base,
    toInt64(count()) AS rated_rows, max(inserted_at) AS stored_until
FROM {database}.usage_events ARRAY JOIN rated
GROUP BY customer_id, hour, resource_id, product, meter, dimension, unit, currency, base_divisor, event_hour;
