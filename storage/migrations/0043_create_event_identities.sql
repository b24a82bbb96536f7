CREATE TABLE IF NOT EXISTS {database}.event_identities (
        identity String,
        digest UInt64,
        customer_id String,
        resource_id String,
        usage_start DateTime64(3, 'UTC')
    ) ENGINE = EmbeddedRocksDB
    PRIMARY KEY identity;
