-- Read tokens issued, so that they can be listed and revoked before they expire; a row
-- is of no use a day after its token expired.
CREATE TABLE IF NOT EXISTS {database}.audit_log (
        at DateTime64(6, 'UTC'),
        key_id String,
        role LowCardinality(String),
        party_id String,
        method LowCardinality(String),
        route String,
        path String,
        status UInt16,
        before String CODEC(ZSTD(3)),
        after String CODEC(ZSTD(3))
    ) ENGINE = MergeTree
    ORDER BY at;
