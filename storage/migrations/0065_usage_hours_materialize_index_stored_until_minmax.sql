ALTER TABLE {database}.usage_hours MATERIALIZE INDEX stored_until_minmax;
