CREATE VIEW IF NOT EXISTS {database}.rated_usage AS
    SELECT event_id, event_type, customer_id, resource_id, product, meter, dimension, unit,
        piece_start AS usage_start,
        least(toStartOfHour(piece_start) + INTERVAL 1 HOUR, event_end) AS usage_end,
        quantity, unit_price, amount, base_quantity, base_divisor, currency, event_start, inserted_at
    FROM (
        SELECT id AS event_id, type AS event_type, customer_id, resource_id, rated.product AS product,
            rated.meter AS meter, rated.dimension AS dimension, rated.unit AS unit,
            rated.usage_start AS piece_start, usage_start AS event_start, usage_end AS event_end,
            rated.quantity AS quantity, rated.unit_price AS unit_price, rated.amount AS amount,
            rated.base_quantity AS base_quantity, rated.base_divisor AS base_divisor, currency, inserted_at
        FROM {database}.usage_events FINAL ARRAY JOIN rated
    );
