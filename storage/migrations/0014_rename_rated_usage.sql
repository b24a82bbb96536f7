RENAME TABLE {database}.rated_usage TO {database}.rated_usage_v1, {database}.raw_events TO {database}.raw_events_v1;
