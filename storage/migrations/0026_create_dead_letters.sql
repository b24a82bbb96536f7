-- One row per numbered message stored (schemas/receipts.py), what completeness reads.
-- A message handled again counts no new events: the row that counted them is kept.
CREATE TABLE IF NOT EXISTS {database}.dead_letters (
        event_id String,
        source String,
        reason String,
        event String CODEC(ZSTD(3)),
        refused_at DateTime64(3, 'UTC')
    ) ENGINE = ReplacingMergeTree
    ORDER BY (source, event_id, reason, sipHash64(event));
