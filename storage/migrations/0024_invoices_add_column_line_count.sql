-- A usage line names what it bills: the dimensions and time spans of the usage priced
-- by its plan (several dimensions under a plan for all of them, part of the period
-- around a price change). The drill-down selects exactly that.
ALTER TABLE {database}.invoices ADD COLUMN IF NOT EXISTS line_count UInt32 DEFAULT 0;
