CREATE TABLE IF NOT EXISTS {database}.catalog_entries (
        kind LowCardinality(String),
        id String,
        version UInt32,
        document String,
        deleted Bool,
        recorded_at DateTime64(3, 'UTC')
    ) ENGINE = MergeTree
    ORDER BY (kind, id, version);
