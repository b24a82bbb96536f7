INSERT INTO {database}.usage_events_by_source SELECT * FROM {database}.usage_events;
