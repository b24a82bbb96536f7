-- Automatic top-ups of prepaid credit: a recurring grant each month, or a top-up to a target when
-- the balance falls under a floor. What they grant goes through the grants' idempotency keys
-- (the plan and its month, or the plan and the crossing's number), so each happens once.
CREATE TABLE IF NOT EXISTS {database}.top_up_plans (
    plan_id String,
    holder_id String,
    kind LowCardinality(String),
    amount Decimal(38, 12),
    floor Decimal(38, 12),
    target Decimal(38, 12),
    deleted Bool,
    created_by String,
    changed_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(changed_at)
ORDER BY plan_id;
