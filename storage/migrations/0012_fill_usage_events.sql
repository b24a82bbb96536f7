INSERT INTO {database}.usage_events (id, type, source, time, customer_id, resource_id,
        message_id, offset, length, event, usage_start, usage_end, currency, rated.product,
        rated.meter, rated.dimension, rated.unit, rated.quantity, rated.unit_price, rated.amount,
        inserted_at)
    SELECT e.id, e.type, e.source, e.time, e.customer_id, e.resource_id, e.message_id, e.offset,
        e.length, e.event, if(r.event_id = '', e.time, r.usage_start),
        if(r.event_id = '', e.time, r.usage_end), r.currency, r.products, r.meters, r.dimensions,
        r.units, r.quantities, r.unit_prices, r.amounts, e.inserted_at
    FROM {database}.raw_events AS e FINAL
    LEFT JOIN (
        SELECT event_id, any(usage_start) AS usage_start, any(usage_end) AS usage_end,
            any(currency) AS currency, groupArray(product) AS products, groupArray(meter) AS meters,
            groupArray(dimension) AS dimensions, groupArray(unit) AS units,
            groupArray(quantity) AS quantities, groupArray(unit_price) AS unit_prices,
            groupArray(amount) AS amounts
        FROM {database}.rated_usage FINAL GROUP BY event_id
    ) AS r ON r.event_id = e.id;
