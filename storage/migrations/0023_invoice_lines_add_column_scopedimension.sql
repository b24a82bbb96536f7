ALTER TABLE {database}.invoice_lines
    ADD COLUMN IF NOT EXISTS `scope.dimension` Array(String),
    ADD COLUMN IF NOT EXISTS `scope.start` Array(DateTime64(3, 'UTC')),
    ADD COLUMN IF NOT EXISTS `scope.end` Array(DateTime64(3, 'UTC'));
