DROP TABLE IF EXISTS {database}.usage_events_by_source;
