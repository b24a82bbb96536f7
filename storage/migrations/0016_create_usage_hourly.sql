CREATE VIEW IF NOT EXISTS {database}.usage_hourly AS
    SELECT customer_id, resource_id, product, meter, dimension, unit, currency,
           toStartOfHour(usage_start) AS hour,
           sum(quantity) AS quantity, sum(amount) AS amount, count() AS rated_rows
    FROM {database}.rated_usage
    GROUP BY customer_id, resource_id, product, meter, dimension, unit, currency, hour;
