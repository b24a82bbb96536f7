-- Lines are written before their header: a header counting its lines ignores any a
-- write cut short left under the same revision (0: a header written before this).
CREATE TABLE IF NOT EXISTS {database}.stored_messages (
        producer String,
        seq UInt64,
        events UInt32,
        first_usage Nullable(DateTime64(3, 'UTC')),
        last_usage Nullable(DateTime64(3, 'UTC')),
        stored_at DateTime64(3, 'UTC')
    ) ENGINE = ReplacingMergeTree(events)
    ORDER BY (producer, seq);
