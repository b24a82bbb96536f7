CREATE TABLE IF NOT EXISTS {database}.raw_messages (
        message_id String,
        payload String CODEC(ZSTD(1)),
        received_at DateTime64(3, 'UTC')
    ) ENGINE = ReplacingMergeTree
    ORDER BY message_id;
