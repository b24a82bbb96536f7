-- One row per change of a key (created, revoked): the latest version is the key.
CREATE TABLE IF NOT EXISTS {database}.read_tokens (
        token_id String,
        role LowCardinality(String),
        party_id String,
        meters Array(String),
        issued_by String,
        issued_at DateTime64(3, 'UTC'),
        expires_at DateTime64(3, 'UTC'),
        revoked_at Nullable(DateTime64(3, 'UTC')),
        changed_at DateTime64(6, 'UTC')
    ) ENGINE = ReplacingMergeTree(changed_at)
    ORDER BY token_id
    TTL toDateTime(expires_at) + INTERVAL 1 DAY;
