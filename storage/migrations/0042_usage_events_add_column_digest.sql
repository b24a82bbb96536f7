-- An event's identity holds in storage, across worker restarts and customers: the sink
-- looks each event's (source, id) up here before writing it, keeps the first copy (a
-- repeat is not written again, so its amount stays as first rated) and refuses a
-- conflict. A key-value table, since a flush looks up thousands of random keys. Events
-- stored before carry no digest (0): a later copy is a repeat if it is about the same
-- customer, resource and time.
ALTER TABLE {database}.usage_events ADD COLUMN IF NOT EXISTS digest UInt64 DEFAULT 0 AFTER length;
