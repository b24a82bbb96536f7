ALTER TABLE {database}.usage_events
    MODIFY COLUMN `rated.product` Array(String),
    MODIFY COLUMN `rated.meter` Array(String),
    MODIFY COLUMN `rated.dimension` Array(String),
    MODIFY COLUMN `rated.unit` Array(String);
