-- The read-only ClickHouse user Grafana connects as, against a ClickHouse server.
-- It reads the usage rollups and nothing else; the ClickHouse data source sets
-- max_execution_time on every query, so the profile lets it change that setting only.
CREATE SETTINGS PROFILE IF NOT EXISTS meterline_grafana_profile
    SETTINGS readonly = 1,
             max_execution_time = 10 CHANGEABLE_IN_READONLY,
             max_result_rows = 1000000,
             max_memory_usage = 2147483648;

CREATE USER IF NOT EXISTS meterline_grafana
    IDENTIFIED WITH sha256_password BY 'change-me'
    SETTINGS PROFILE 'meterline_grafana_profile';

GRANT SELECT ON meterline.usage_by_hour TO meterline_grafana;
GRANT SELECT ON meterline.usage_by_day TO meterline_grafana;
