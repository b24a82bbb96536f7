-- The rewritten rollups, replaced by migrations 49-52.
DROP TABLE IF EXISTS {database}.usage_by_hour;
DROP TABLE IF EXISTS {database}.usage_by_day;
