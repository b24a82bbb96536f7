-- Portal sessions signed out before they expire: a session cookie copied before its sign-out is
-- refused (the cookie is signed, not stored, so the end of a session is what is stored).
CREATE TABLE IF NOT EXISTS {database}.portal_sign_outs
(
    session_id String,
    signed_out_at DateTime64(3, 'UTC'),
    expires_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY session_id
TTL toDateTime(expires_at) + INTERVAL 1 DAY;
