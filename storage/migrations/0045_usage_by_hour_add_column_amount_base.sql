-- Amounts exact until shown: a rollup row keeps the sum of base quantity x unit price (two
-- finite decimals, so their product is exact), divided by the row's divisor where it is
-- read. The rated rows' own amounts, each rounded at 12 places, summed to noise (twelve
-- 5-minute samples of 20 GiB at 0.0002 made 0.003999999996). Levels are priced at the close.
ALTER TABLE {database}.usage_by_hour ADD COLUMN IF NOT EXISTS amount_base Decimal(76, 24) AFTER amount;
