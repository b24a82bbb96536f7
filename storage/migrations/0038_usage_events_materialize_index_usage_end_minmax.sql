ALTER TABLE {database}.usage_events MATERIALIZE INDEX usage_end_minmax;
