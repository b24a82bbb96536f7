CREATE VIEW IF NOT EXISTS {database}.rated_usage AS
    SELECT id AS event_id, type AS event_type, customer_id, resource_id, rated.product AS product,
        rated.meter AS meter, rated.dimension AS dimension, rated.unit AS unit, usage_start, usage_end,
        rated.quantity AS quantity, rated.unit_price AS unit_price, rated.amount AS amount, currency,
        inserted_at
    FROM {database}.usage_events FINAL ARRAY JOIN rated;
