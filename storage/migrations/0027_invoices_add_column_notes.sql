-- Refused events with their reason, kept for as long as the messages they came in.
ALTER TABLE {database}.invoices ADD COLUMN IF NOT EXISTS notes String DEFAULT '';
