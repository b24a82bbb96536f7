-- Exact quantities: each rated element keeps its quantity in the meter's integer base
-- units (vCPU-seconds, bytes...) and the divisor to its unit, so a period's total is a
-- sum of exact figures divided once. An element also has its own start: a sample that
-- crosses an hour is split between the hours. Rows stored before keep what they had.
DROP VIEW IF EXISTS {database}.usage_hourly;
