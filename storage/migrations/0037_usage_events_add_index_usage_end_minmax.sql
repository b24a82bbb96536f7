-- The edges of a window that the rollups do not cover are read from the events; an event's
-- end bounds which can reach a window, and lets a read skip the rest.
ALTER TABLE {database}.usage_events ADD INDEX IF NOT EXISTS usage_end_minmax usage_end TYPE minmax;
