DROP VIEW IF EXISTS {database}.rated_usage;
