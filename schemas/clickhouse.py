"""ClickHouse tables, in one place, applied by an idempotent migration at start-up.

Invoices are versioned rows too: a status change or a re-closed draft is a new row (the latest
``updated_at`` wins), and a draft's lines are stored under its revision, never edited.

Exactly-once counting rests here: both tables are ReplacingMergeTree keyed by the event id
(and meter), so writing an event again - after a redelivery, a replayed spool, a re-sent HTTP
batch - leaves one row, and every read goes through ``FINAL``.

Received messages are kept whole, keyed by their content hash; an accepted event points into
its message (``message_id``, and the ``offset`` and ``length`` of its bytes there). Events
stored before that change carry their own JSON in ``raw_events.event`` instead.
"""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

RAW_EVENTS = "raw_events"
RAW_MESSAGES = "raw_messages"
RATED_USAGE = "rated_usage"
USAGE_HOURLY = "usage_hourly"
INVOICES = "invoices"
INVOICE_LINES = "invoice_lines"
DELIVERIES = "invoice_deliveries"
CATALOG_ENTRIES = "catalog_entries"
MIGRATIONS = "schema_migrations"


def migrations(database: str) -> list[tuple[int, str]]:
    """Numbered DDL statements; a number is never reused or edited once released."""
    return [
        (1, f"CREATE DATABASE IF NOT EXISTS {database}"),
        (
            2,
            f"""CREATE TABLE IF NOT EXISTS {database}.{RAW_EVENTS} (
                id String,
                type LowCardinality(String),
                source String,
                time DateTime64(3, 'UTC'),
                customer_id String,
                resource_id String,
                event String CODEC(ZSTD(3)),
                inserted_at DateTime64(3, 'UTC')
            ) ENGINE = ReplacingMergeTree
            PARTITION BY toYYYYMM(time)
            ORDER BY (customer_id, id)""",
        ),
        (
            3,
            f"""CREATE TABLE IF NOT EXISTS {database}.{RATED_USAGE} (
                event_id String,
                event_type LowCardinality(String),
                customer_id String,
                resource_id String,
                product LowCardinality(String),
                meter LowCardinality(String),
                dimension LowCardinality(String),
                unit LowCardinality(String),
                usage_start DateTime64(3, 'UTC'),
                usage_end DateTime64(3, 'UTC'),
                quantity Decimal(38, 12),
                unit_price Decimal(38, 12),
                amount Decimal(38, 12),
                currency LowCardinality(String),
                inserted_at DateTime64(3, 'UTC')
            ) ENGINE = ReplacingMergeTree
            PARTITION BY toYYYYMM(usage_start)
            ORDER BY (customer_id, toStartOfHour(usage_start), resource_id, meter, dimension, event_id)""",
        ),
        (
            4,
            f"""CREATE VIEW IF NOT EXISTS {database}.{USAGE_HOURLY} AS
            SELECT customer_id, resource_id, product, meter, dimension, unit, currency,
                   toStartOfHour(usage_start) AS hour,
                   sum(quantity) AS quantity, sum(amount) AS amount, count() AS rated_rows
            FROM {database}.{RATED_USAGE} FINAL
            GROUP BY customer_id, resource_id, product, meter, dimension, unit, currency, hour""",
        ),
        (
            5,
            f"""CREATE TABLE IF NOT EXISTS {database}.{INVOICES} (
                invoice_id String,
                revision UInt32,
                document_type LowCardinality(String),
                status LowCardinality(String),
                period String,
                issuer_id String,
                buyer_id String,
                buyer_name String,
                number String,
                sequence UInt64,
                credits_number String,
                currency LowCardinality(String),
                covered_customers Array(String),
                discount_percent Decimal(38, 12),
                tax_name String,
                tax_rate_percent Decimal(38, 12),
                tax_inclusive Bool,
                subtotal Decimal(38, 12),
                discount Decimal(38, 12),
                net Decimal(38, 12),
                tax_amount Decimal(38, 12),
                total Decimal(38, 12),
                closed_at DateTime64(3, 'UTC'),
                issued_at Nullable(DateTime64(3, 'UTC')),
                updated_at DateTime64(3, 'UTC')
            ) ENGINE = ReplacingMergeTree(updated_at)
            ORDER BY invoice_id""",
        ),
        (
            6,
            f"""CREATE TABLE IF NOT EXISTS {database}.{INVOICE_LINES} (
                invoice_id String,
                revision UInt32,
                line_no UInt32,
                kind LowCardinality(String),
                description String,
                quantity Decimal(38, 12),
                unit LowCardinality(String),
                unit_price Decimal(38, 12),
                amount Decimal(38, 12),
                meter LowCardinality(String),
                dimension LowCardinality(String),
                adjusts_period String
            ) ENGINE = ReplacingMergeTree
            ORDER BY (invoice_id, revision, line_no)""",
        ),
        (
            7,
            f"""CREATE TABLE IF NOT EXISTS {database}.{DELIVERIES} (
                invoice_id String,
                recipient String,
                status LowCardinality(String),
                attempts UInt32,
                last_error String,
                next_attempt_at DateTime64(3, 'UTC'),
                updated_at DateTime64(3, 'UTC')
            ) ENGINE = ReplacingMergeTree(updated_at)
            ORDER BY invoice_id""",
        ),
        (
            8,
            f"""CREATE TABLE IF NOT EXISTS {database}.{CATALOG_ENTRIES} (
                kind LowCardinality(String),
                id String,
                version UInt32,
                document String,
                deleted Bool,
                recorded_at DateTime64(3, 'UTC')
            ) ENGINE = MergeTree
            ORDER BY (kind, id, version)""",
        ),
        (
            9,
            f"""ALTER TABLE {database}.{RAW_EVENTS}
            ADD COLUMN IF NOT EXISTS message_id String AFTER resource_id,
            ADD COLUMN IF NOT EXISTS offset UInt32 AFTER message_id,
            ADD COLUMN IF NOT EXISTS length UInt32 AFTER offset""",
        ),
        (
            10,
            f"""CREATE TABLE IF NOT EXISTS {database}.{RAW_MESSAGES} (
                message_id String,
                payload String CODEC(ZSTD(1)),
                received_at DateTime64(3, 'UTC')
            ) ENGINE = ReplacingMergeTree
            ORDER BY message_id""",
        ),
    ]


def migrate(client: Client, database: str) -> None:
    """Apply every migration; safe to run at each start and from several processes."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {database}.{MIGRATIONS} "
        "(version UInt32, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    applied = str(client.command(f"SELECT groupArray(version) FROM {database}.{MIGRATIONS}"))
    done = {int(v) for v in applied.strip("[]").split(",") if v.strip()}
    for version, statement in migrations(database):
        if version in done:
            continue
        client.command(statement)
        client.command(f"INSERT INTO {database}.{MIGRATIONS} (version) VALUES ({version:d})")
