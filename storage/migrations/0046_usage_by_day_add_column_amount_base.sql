ALTER TABLE {database}.usage_by_day ADD COLUMN IF NOT EXISTS amount_base Decimal(76, 24) AFTER amount;
