-- Append-only: who changed what, when, and the state before and after (JSON).
-- An event is known by its (source, id), and storage keeps one row per identity: keyed by
-- id alone, an event of another source with the same id (an ingest key bound elsewhere,
-- guessing or reading an agent's ids) replaced the real one. The table is rebuilt with
-- the source in its key and swapped in; were the swap done twice (a crash before it is
-- recorded), the copy is dropped with the old key left in place, and nothing is lost.
CREATE TABLE IF NOT EXISTS {database}.usage_events_by_source AS {database}.usage_events
    ENGINE = ReplacingMergeTree
    PARTITION BY toYYYYMM(usage_start)
    ORDER BY (customer_id, toStartOfHour(usage_start), resource_id, source, id);
