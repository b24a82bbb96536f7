INSERT INTO {database}.usage_by_day
    SELECT customer_id, toStartOfDay(hour) AS day, resource_id, product, meter, dimension, unit, currency,
        base_divisor, sum(base_sum), max(base_max), argMax(base_latest, latest_at), max(latest_at),
        sum(amount), sum(amount_base), sum(rated_rows), max(stored_until), now64(6)
    FROM {database}.usage_by_hour FINAL
    GROUP BY day, customer_id, resource_id, product, meter, dimension, unit, currency, base_divisor;
