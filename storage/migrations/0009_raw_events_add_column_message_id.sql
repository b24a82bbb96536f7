ALTER TABLE {database}.raw_events
    ADD COLUMN IF NOT EXISTS message_id String AFTER resource_id,
    ADD COLUMN IF NOT EXISTS offset UInt32 AFTER message_id,
    ADD COLUMN IF NOT EXISTS length UInt32 AFTER offset;
