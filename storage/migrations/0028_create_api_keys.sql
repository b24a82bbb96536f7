CREATE TABLE IF NOT EXISTS {database}.api_keys (
        key_id String,
        secret_sha256 String,
        name String,
        role LowCardinality(String),
        party_id String,
        sources Array(String),
        customers Array(String),
        created_by String,
        created_at DateTime64(3, 'UTC'),
        expires_at Nullable(DateTime64(3, 'UTC')),
        revoked_at Nullable(DateTime64(3, 'UTC')),
        changed_at DateTime64(6, 'UTC')
    ) ENGINE = ReplacingMergeTree(changed_at)
    ORDER BY key_id;
