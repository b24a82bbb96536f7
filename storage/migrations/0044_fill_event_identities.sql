INSERT INTO {database}.event_identities
    SELECT concat(source, char(31), id), digest, customer_id, resource_id, usage_start
    FROM {database}.usage_events FINAL;
