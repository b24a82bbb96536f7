DROP VIEW IF EXISTS {database}.usage_hourly;
