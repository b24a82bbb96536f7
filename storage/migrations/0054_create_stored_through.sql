-- How far each sink has stored: every row it stamped at or before ``stored_through`` is visible.
-- A close bills the events stored by the earliest of the sinks' marks (``storage.clock``), so
-- any process can read the cutoff, and no sink's write under way is cut in two. A key-value
-- table: a sink overwrites its one row after every flush and once a second while idle, which
-- in a MergeTree would be a new part each time.
CREATE TABLE IF NOT EXISTS {database}.stored_through (
    writer String,
    stored_through DateTime64(3, 'UTC'),
    recorded_at DateTime64(6, 'UTC')
) ENGINE = EmbeddedRocksDB
PRIMARY KEY writer;
