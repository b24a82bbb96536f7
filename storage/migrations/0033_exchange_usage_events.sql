EXCHANGE TABLES {database}.usage_events AND {database}.usage_events_by_source;
