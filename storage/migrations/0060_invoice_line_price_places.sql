-- The decimal places a line's unit price had in the price list (0.0200: 4), since the stored
-- Decimal(38, 12) keeps 12 for every price. 0 for lines written before: shown without trailing zeros.
ALTER TABLE {database}.invoice_lines ADD COLUMN IF NOT EXISTS unit_price_places UInt8 DEFAULT 0;
