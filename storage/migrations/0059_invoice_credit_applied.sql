-- What prepaid credit paid of an invoice (tax included): the buyer owes total - credit_applied.
ALTER TABLE {database}.invoices ADD COLUMN IF NOT EXISTS credit_applied Decimal(38, 12) DEFAULT 0;
