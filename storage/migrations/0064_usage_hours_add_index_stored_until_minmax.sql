-- What moved since a pass (credit settlement, the readers of late usage) is found by when it was
-- stored: without an index that read scans every hour of the months that still take late usage,
-- at each pass. Merged parts hold old writes only, and are skipped whole.
ALTER TABLE {database}.usage_hours ADD INDEX IF NOT EXISTS stored_until_minmax stored_until TYPE minmax;
