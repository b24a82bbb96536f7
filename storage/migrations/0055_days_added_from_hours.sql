-- A flush's events are expanded and priced once, into the hours; the days are added to from
-- what is added to the hours (the events' rows, and any correction of an hour), so days are
-- the hours rolled up by construction and a correction is made in the hours alone. Neither
-- view groups a block: every reader aggregates rollup rows again, and the engine merges them
-- in the background, so grouping at insert only doubled the cost of a flush (a 5,000-event
-- flush wrote in 45 ms instead of 85).
DROP VIEW IF EXISTS {database}.usage_days_of_events;
CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.usage_days_of_hours TO {database}.usage_days AS
SELECT customer_id, toStartOfDay(hour) AS day, resource_id, product, meter, dimension, unit, currency,
    base_divisor, base_sum, base_max, latest, amount, amount_base, rated_rows, stored_until
FROM {database}.usage_hours;
DROP VIEW IF EXISTS {database}.usage_hours_of_events;
CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.usage_hours_of_events TO {database}.usage_hours AS
SELECT customer_id, toStartOfHour(rated.usage_start) AS hour, resource_id, rated.product AS product,
    rated.meter AS meter, rated.dimension AS dimension, rated.unit AS unit, currency,
    rated.base_divisor AS base_divisor, toStartOfHour(usage_start) AS event_hour,
    rated.base_quantity AS base_sum, rated.base_quantity AS base_max,
    (rated.usage_start, rated.base_quantity) AS latest, rated.amount AS amount,
    if(rated.meter IN ('xaas_peak_units', 'xaas_latest_units'), toDecimal256(0, 24),
        toDecimal256(rated.base_quantity, 12) * rated.unit_price) AS amount_base,
    toInt64(1) AS rated_rows, inserted_at AS stored_until
FROM {database}.usage_events ARRAY JOIN rated;
