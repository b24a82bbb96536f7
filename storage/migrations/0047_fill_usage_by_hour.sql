INSERT INTO {database}.usage_by_hour
    SELECT customer_id, toStartOfHour(rated.usage_start) AS hour, resource_id, rated.product AS product,
        rated.meter AS meter, rated.dimension AS dimension, rated.unit AS unit, currency,
        rated.base_divisor AS base_divisor, toStartOfHour(usage_start) AS event_hour,
        sum(rated.base_quantity) AS base_sum, max(rated.base_quantity) AS base_max,
        argMax(rated.base_quantity, rated.usage_start) AS base_latest, max(rated.usage_start) AS latest_at,
        sum(rated.amount) AS amount,
        sum(if(rated.meter IN ('xaas_peak_units', 'xaas_latest_units'), toDecimal256(0, 24),
            toDecimal256(rated.base_quantity, 12) * rated.unit_price)) AS amount_base,
        count() AS rated_rows, max(inserted_at) AS stored_until, now64(6) AS computed_at
    FROM {database}.usage_events FINAL ARRAY JOIN rated
    GROUP BY hour, event_hour, customer_id, resource_id, product, meter, dimension, unit, currency,
        base_divisor;
