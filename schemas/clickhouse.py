"""ClickHouse tables, in one place, applied by an idempotent migration at start-up.

Invoices are versioned rows too: a status change or a re-closed draft is a new row (the latest
``updated_at`` wins), and a draft's lines are stored under its revision, never edited.

Exactly-once counting rests here: ``usage_events`` is a ReplacingMergeTree keyed by the event's
identity (its source and id, within its customer, hour and resource), one row per accepted
event with its rated usage as a nested list, so writing an event again - after a redelivery, a
replayed spool, a re-sent HTTP batch - leaves one row, and it is read through ``FINAL``.
``rated_usage`` is a view of it with one row per event and meter. Usage is read from exact
rollups (``usage_by_hour``, ``usage_by_day``) kept in step with it by the sink, and from the
events themselves where a window cuts an hour (``billing.adapters.usage_rows``).

Received messages are kept whole, keyed by their content hash; an accepted event points into
its message (``message_id``, and the ``offset`` and ``length`` of its bytes there). Events
stored before that change carry their own JSON in ``event`` instead. The tables of the first
layout (one row per event and meter, a raw-events table beside it) are converted by migration
12 and kept, renamed with a ``_v1`` suffix.
"""

from __future__ import annotations

from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from schemas.events import LONGEST_INTERVAL_S
from schemas.meters import Meter

RAW_EVENTS = "raw_events"
RAW_MESSAGES = "raw_messages"
USAGE_EVENTS = "usage_events"
RATED_USAGE = "rated_usage"
USAGE_HOURLY = "usage_hourly"
USAGE_BY_HOUR = "usage_by_hour"
USAGE_BY_DAY = "usage_by_day"
INVOICES = "invoices"
INVOICE_LINES = "invoice_lines"
DELIVERIES = "invoice_deliveries"
CATALOG_ENTRIES = "catalog_entries"
STORED_MESSAGES = "stored_messages"
DEAD_LETTERS = "dead_letters"
API_KEYS = "api_keys"
READ_TOKENS = "read_tokens"
AUDIT_LOG = "audit_log"
EVENT_IDENTITIES = "event_identities"
MIGRATIONS = "schema_migrations"


def stored_by(database: str) -> str:
    """A condition on ``usage_events``: events first stored at or before ``stored_by``, which is
    what a close billed whatever arrived or was written again since (a copy written again before
    identities were kept carries a later ``inserted_at``, and ``FINAL`` shows the last copy). An
    event is known by its (source, id): another source's event with the same id is another event."""
    return (
        f"(source, id) IN (SELECT source, id FROM {database}.{USAGE_EVENTS} "
        f"WHERE usage_start > {{start:DateTime64(3, 'UTC')}} - INTERVAL {LONGEST_INTERVAL_S} SECOND "
        "AND usage_start < {end:DateTime64(3, 'UTC')} "
        "GROUP BY source, id HAVING min(inserted_at) <= {stored_by:DateTime64(3, 'UTC')})"
    )


def as_utc(value: datetime) -> datetime:
    """ClickHouse (chDB at least) hands back naive UTC timestamps; say so explicitly."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


ROLLUP_KEY = "customer_id, resource_id, product, meter, dimension, unit, currency, base_divisor"
"""What a rollup row is usage of, besides its hour or day: one resource's use of one meter."""
PARTIALS = "base_sum, base_max, base_latest, latest_at, amount_base, rated_rows"
"""What a rollup row holds, enough to aggregate any number of them again exactly: the sum, the
highest and the latest (with its time) base quantity, the amount times the row's divisor (exact:
divided once, where rows of one divisor are summed), and how many rated rows."""


def _level_meters() -> str:
    return ", ".join(f"'{meter.value}'" for meter in Meter if meter.aggregation.is_level)


_PRICED = "toDecimal256(rated.base_quantity, 12) * rated.unit_price"
RATED_AMOUNT_BASE = f"if(rated.meter IN ({_level_meters()}), toDecimal256(0, 24), {_PRICED})"
"""A rated element's amount times its divisor, exactly: what the rollups sum. A level's rows are
worth nothing until the close prices the period's figure."""


def hours_from_events(database: str, where: str, events: str | None = None) -> str:
    """Rows of ``usage_by_hour`` recounted from the stored events that ``where`` selects, each
    event once (``FINAL``), or from another table of events (``events``, as a flush's scratch
    table). A row is per hour of usage and per hour its events started in, so that recounting
    the events of one start hour replaces exactly the rows they make."""
    source = events or f"{database}.{USAGE_EVENTS} FINAL"
    return f"""SELECT customer_id, toStartOfHour(rated.usage_start) AS hour, resource_id, rated.product AS product,
            rated.meter AS meter, rated.dimension AS dimension, rated.unit AS unit, currency,
            rated.base_divisor AS base_divisor, toStartOfHour(usage_start) AS event_hour,
            sum(rated.base_quantity) AS base_sum, max(rated.base_quantity) AS base_max,
            argMax(rated.base_quantity, rated.usage_start) AS base_latest, max(rated.usage_start) AS latest_at,
            sum(rated.amount) AS amount, sum({RATED_AMOUNT_BASE}) AS amount_base, count() AS rated_rows,
            max(inserted_at) AS stored_until, now64(6) AS computed_at
        FROM {source} ARRAY JOIN rated
        WHERE {where}
        GROUP BY hour, event_hour, {ROLLUP_KEY}"""


def days_from_hours(database: str, where: str) -> str:
    """Rows of ``usage_by_day`` from the hour rows that ``where`` selects."""
    return f"""SELECT customer_id, toStartOfDay(hour) AS day, resource_id, product, meter, dimension, unit, currency,
            base_divisor, sum(base_sum), max(base_max), argMax(base_latest, latest_at), max(latest_at), sum(amount),
            sum(amount_base), sum(rated_rows), max(stored_until), now64(6)
        FROM {database}.{USAGE_BY_HOUR} FINAL
        WHERE {where}
        GROUP BY day, {ROLLUP_KEY}"""


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
        (
            11,
            f"""CREATE TABLE IF NOT EXISTS {database}.{USAGE_EVENTS} (
                id String,
                type LowCardinality(String),
                source String,
                time DateTime64(3, 'UTC'),
                customer_id String,
                resource_id String,
                message_id String,
                offset UInt32,
                length UInt32,
                event String CODEC(ZSTD(3)),
                usage_start DateTime64(3, 'UTC'),
                usage_end DateTime64(3, 'UTC'),
                currency LowCardinality(String),
                rated Nested(
                    product LowCardinality(String),
                    meter LowCardinality(String),
                    dimension LowCardinality(String),
                    unit LowCardinality(String),
                    quantity Decimal(38, 12),
                    unit_price Decimal(38, 12),
                    amount Decimal(38, 12)
                ),
                inserted_at DateTime64(3, 'UTC')
            ) ENGINE = ReplacingMergeTree
            PARTITION BY toYYYYMM(usage_start)
            ORDER BY (customer_id, toStartOfHour(usage_start), resource_id, id)""",
        ),
        (
            12,
            f"""INSERT INTO {database}.{USAGE_EVENTS} (id, type, source, time, customer_id, resource_id,
                message_id, offset, length, event, usage_start, usage_end, currency, rated.product,
                rated.meter, rated.dimension, rated.unit, rated.quantity, rated.unit_price, rated.amount,
                inserted_at)
            SELECT e.id, e.type, e.source, e.time, e.customer_id, e.resource_id, e.message_id, e.offset,
                e.length, e.event, if(r.event_id = '', e.time, r.usage_start),
                if(r.event_id = '', e.time, r.usage_end), r.currency, r.products, r.meters, r.dimensions,
                r.units, r.quantities, r.unit_prices, r.amounts, e.inserted_at
            FROM {database}.{RAW_EVENTS} AS e FINAL
            LEFT JOIN (
                SELECT event_id, any(usage_start) AS usage_start, any(usage_end) AS usage_end,
                    any(currency) AS currency, groupArray(product) AS products, groupArray(meter) AS meters,
                    groupArray(dimension) AS dimensions, groupArray(unit) AS units,
                    groupArray(quantity) AS quantities, groupArray(unit_price) AS unit_prices,
                    groupArray(amount) AS amounts
                FROM {database}.{RATED_USAGE} FINAL GROUP BY event_id
            ) AS r ON r.event_id = e.id""",
        ),
        (13, f"DROP VIEW IF EXISTS {database}.{USAGE_HOURLY}"),
        (
            14,
            f"RENAME TABLE {database}.{RATED_USAGE} TO {database}.{RATED_USAGE}_v1, "
            f"{database}.{RAW_EVENTS} TO {database}.{RAW_EVENTS}_v1",
        ),
        (
            15,
            f"""CREATE VIEW IF NOT EXISTS {database}.{RATED_USAGE} AS
            SELECT id AS event_id, type AS event_type, customer_id, resource_id, rated.product AS product,
                rated.meter AS meter, rated.dimension AS dimension, rated.unit AS unit, usage_start, usage_end,
                rated.quantity AS quantity, rated.unit_price AS unit_price, rated.amount AS amount, currency,
                inserted_at
            FROM {database}.{USAGE_EVENTS} FINAL ARRAY JOIN rated""",
        ),
        (
            16,
            f"""CREATE VIEW IF NOT EXISTS {database}.{USAGE_HOURLY} AS
            SELECT customer_id, resource_id, product, meter, dimension, unit, currency,
                   toStartOfHour(usage_start) AS hour,
                   sum(quantity) AS quantity, sum(amount) AS amount, count() AS rated_rows
            FROM {database}.{RATED_USAGE}
            GROUP BY customer_id, resource_id, product, meter, dimension, unit, currency, hour""",
        ),
        (
            17,
            # A LowCardinality column inside an array rebuilds its dictionary at every insert and
            # merge: plain strings halve the cost of merging this table and change no query.
            f"""ALTER TABLE {database}.{USAGE_EVENTS}
            MODIFY COLUMN `rated.product` Array(String),
            MODIFY COLUMN `rated.meter` Array(String),
            MODIFY COLUMN `rated.dimension` Array(String),
            MODIFY COLUMN `rated.unit` Array(String)""",
        ),
        (
            18,
            # Exact quantities: each rated element keeps its quantity in the meter's integer base
            # units (vCPU-seconds, bytes...) and the divisor to its unit, so a period's total is a
            # sum of exact figures divided once. An element also has its own start: a sample that
            # crosses an hour is split between the hours. Rows stored before keep what they had.
            f"""ALTER TABLE {database}.{USAGE_EVENTS}
            ADD COLUMN IF NOT EXISTS `rated.usage_start` Array(DateTime64(3, 'UTC'))
                DEFAULT arrayMap(m -> usage_start, `rated.meter`),
            ADD COLUMN IF NOT EXISTS `rated.base_quantity` Array(Decimal(38, 12)) DEFAULT `rated.quantity`,
            ADD COLUMN IF NOT EXISTS `rated.base_divisor` Array(UInt32)
                DEFAULT arrayMap(m -> toUInt32(1), `rated.meter`)""",
        ),
        (19, f"DROP VIEW IF EXISTS {database}.{USAGE_HOURLY}"),
        (20, f"DROP VIEW IF EXISTS {database}.{RATED_USAGE}"),
        (
            21,
            # Event-level times are renamed inside the subquery: an outer alias named like a
            # column would shadow it. ``event_start`` is what reaches the table's key.
            f"""CREATE VIEW IF NOT EXISTS {database}.{RATED_USAGE} AS
            SELECT event_id, event_type, customer_id, resource_id, product, meter, dimension, unit,
                piece_start AS usage_start,
                least(toStartOfHour(piece_start) + INTERVAL 1 HOUR, event_end) AS usage_end,
                quantity, unit_price, amount, base_quantity, base_divisor, currency, event_start, inserted_at
            FROM (
                SELECT id AS event_id, type AS event_type, customer_id, resource_id, rated.product AS product,
                    rated.meter AS meter, rated.dimension AS dimension, rated.unit AS unit,
                    rated.usage_start AS piece_start, usage_start AS event_start, usage_end AS event_end,
                    rated.quantity AS quantity, rated.unit_price AS unit_price, rated.amount AS amount,
                    rated.base_quantity AS base_quantity, rated.base_divisor AS base_divisor, currency, inserted_at
                FROM {database}.{USAGE_EVENTS} FINAL ARRAY JOIN rated
            )""",
        ),
        (
            22,
            f"""CREATE VIEW IF NOT EXISTS {database}.{USAGE_HOURLY} AS
            SELECT customer_id, resource_id, product, meter, dimension, unit, currency,
                   toStartOfHour(usage_start) AS hour,
                   sum(quantity) AS quantity, sum(amount) AS amount, count() AS rated_rows
            FROM {database}.{RATED_USAGE}
            GROUP BY customer_id, resource_id, product, meter, dimension, unit, currency, hour""",
        ),
        (
            23,
            # A usage line names what it bills: the dimensions and time spans of the usage priced
            # by its plan (several dimensions under a plan for all of them, part of the period
            # around a price change). The drill-down selects exactly that.
            f"""ALTER TABLE {database}.{INVOICE_LINES}
            ADD COLUMN IF NOT EXISTS `scope.dimension` Array(String),
            ADD COLUMN IF NOT EXISTS `scope.start` Array(DateTime64(3, 'UTC')),
            ADD COLUMN IF NOT EXISTS `scope.end` Array(DateTime64(3, 'UTC'))""",
        ),
        (
            24,
            # Lines are written before their header: a header counting its lines ignores any a
            # write cut short left under the same revision (0: a header written before this).
            f"ALTER TABLE {database}.{INVOICES} ADD COLUMN IF NOT EXISTS line_count UInt32 DEFAULT 0",
        ),
        (
            25,
            # One row per numbered message stored (schemas/receipts.py), what completeness reads.
            # A message handled again counts no new events: the row that counted them is kept.
            f"""CREATE TABLE IF NOT EXISTS {database}.{STORED_MESSAGES} (
                producer String,
                seq UInt64,
                events UInt32,
                first_usage Nullable(DateTime64(3, 'UTC')),
                last_usage Nullable(DateTime64(3, 'UTC')),
                stored_at DateTime64(3, 'UTC')
            ) ENGINE = ReplacingMergeTree(events)
            ORDER BY (producer, seq)""",
        ),
        (
            26,
            # Refused events with their reason, kept for as long as the messages they came in.
            f"""CREATE TABLE IF NOT EXISTS {database}.{DEAD_LETTERS} (
                event_id String,
                source String,
                reason String,
                event String CODEC(ZSTD(3)),
                refused_at DateTime64(3, 'UTC')
            ) ENGINE = ReplacingMergeTree
            ORDER BY (source, event_id, reason, sipHash64(event))""",
        ),
        (27, f"ALTER TABLE {database}.{INVOICES} ADD COLUMN IF NOT EXISTS notes String DEFAULT ''"),
        (
            28,
            # One row per change of a key (created, revoked): the latest version is the key.
            f"""CREATE TABLE IF NOT EXISTS {database}.{API_KEYS} (
                key_id String,
                secret_sha256 String,
                name String,
                role LowCardinality(String),
                party_id String,
                sources Array(String),
                customers Array(String),
                created_by String,
                created_at DateTime64(3, 'UTC'),
                expires_at Nullable(DateTime64(3, 'UTC')),
                revoked_at Nullable(DateTime64(3, 'UTC')),
                changed_at DateTime64(6, 'UTC')
            ) ENGINE = ReplacingMergeTree(changed_at)
            ORDER BY key_id""",
        ),
        (
            29,
            # Read tokens issued, so that they can be listed and revoked before they expire; a row
            # is of no use a day after its token expired.
            f"""CREATE TABLE IF NOT EXISTS {database}.{READ_TOKENS} (
                token_id String,
                role LowCardinality(String),
                party_id String,
                meters Array(String),
                issued_by String,
                issued_at DateTime64(3, 'UTC'),
                expires_at DateTime64(3, 'UTC'),
                revoked_at Nullable(DateTime64(3, 'UTC')),
                changed_at DateTime64(6, 'UTC')
            ) ENGINE = ReplacingMergeTree(changed_at)
            ORDER BY token_id
            TTL toDateTime(expires_at) + INTERVAL 1 DAY""",
        ),
        (
            30,
            # Append-only: who changed what, when, and the state before and after (JSON).
            f"""CREATE TABLE IF NOT EXISTS {database}.{AUDIT_LOG} (
                at DateTime64(6, 'UTC'),
                key_id String,
                role LowCardinality(String),
                party_id String,
                method LowCardinality(String),
                route String,
                path String,
                status UInt16,
                before String CODEC(ZSTD(3)),
                after String CODEC(ZSTD(3))
            ) ENGINE = MergeTree
            ORDER BY at""",
        ),
        # An event is known by its (source, id), and storage keeps one row per identity: keyed by
        # id alone, an event of another source with the same id (an ingest key bound elsewhere,
        # guessing or reading an agent's ids) replaced the real one. The table is rebuilt with
        # the source in its key and swapped in; were the swap done twice (a crash before it is
        # recorded), the copy is dropped with the old key left in place, and nothing is lost.
        (
            31,
            f"""CREATE TABLE IF NOT EXISTS {database}.{USAGE_EVENTS}_by_source AS {database}.{USAGE_EVENTS}
            ENGINE = ReplacingMergeTree
            PARTITION BY toYYYYMM(usage_start)
            ORDER BY (customer_id, toStartOfHour(usage_start), resource_id, source, id)""",
        ),
        (32, f"INSERT INTO {database}.{USAGE_EVENTS}_by_source SELECT * FROM {database}.{USAGE_EVENTS}"),
        (33, f"EXCHANGE TABLES {database}.{USAGE_EVENTS} AND {database}.{USAGE_EVENTS}_by_source"),
        (34, f"DROP TABLE IF EXISTS {database}.{USAGE_EVENTS}_by_source"),
        # Exact rollups, kept in step by the sink (``storage.rollups``): recounted from ``usage_events``
        # for every (customer, start hour) a flush wrote, so an event written again is
        # still counted once. ``stored_until`` is the latest write among a row's events: a read
        # of what was stored by some time takes a later row's hour from the events instead.
        (
            35,
            f"""CREATE TABLE IF NOT EXISTS {database}.{USAGE_BY_HOUR} (
                customer_id String,
                hour DateTime('UTC'),
                resource_id String,
                product LowCardinality(String),
                meter LowCardinality(String),
                dimension LowCardinality(String),
                unit LowCardinality(String),
                currency LowCardinality(String),
                base_divisor UInt32,
                event_hour DateTime('UTC'),
                base_sum Decimal(38, 12),
                base_max Decimal(38, 12),
                base_latest Decimal(38, 12),
                latest_at DateTime64(3, 'UTC'),
                amount Decimal(38, 12),
                rated_rows UInt64,
                stored_until DateTime64(3, 'UTC'),
                computed_at DateTime64(6, 'UTC')
            ) ENGINE = ReplacingMergeTree(computed_at)
            PARTITION BY toYYYYMM(hour)
            ORDER BY (customer_id, hour, resource_id, product, meter, dimension, unit, currency, base_divisor,
                event_hour)""",
        ),
        (
            36,
            f"""CREATE TABLE IF NOT EXISTS {database}.{USAGE_BY_DAY} (
                customer_id String,
                day DateTime('UTC'),
                resource_id String,
                product LowCardinality(String),
                meter LowCardinality(String),
                dimension LowCardinality(String),
                unit LowCardinality(String),
                currency LowCardinality(String),
                base_divisor UInt32,
                base_sum Decimal(38, 12),
                base_max Decimal(38, 12),
                base_latest Decimal(38, 12),
                latest_at DateTime64(3, 'UTC'),
                amount Decimal(38, 12),
                rated_rows UInt64,
                stored_until DateTime64(3, 'UTC'),
                computed_at DateTime64(6, 'UTC')
            ) ENGINE = ReplacingMergeTree(computed_at)
            PARTITION BY toYYYYMM(day)
            ORDER BY (customer_id, day, resource_id, product, meter, dimension, unit, currency, base_divisor)""",
        ),
        # The edges of a window that the rollups do not cover are read from the events; an event's
        # end bounds which can reach a window, and lets a read skip the rest.
        (37, f"ALTER TABLE {database}.{USAGE_EVENTS} ADD INDEX IF NOT EXISTS usage_end_minmax usage_end TYPE minmax"),
        (38, f"ALTER TABLE {database}.{USAGE_EVENTS} MATERIALIZE INDEX usage_end_minmax"),
        # released as calls of the live recount; frozen here as they ran
        (
            39,
            f"""INSERT INTO {database}.{USAGE_BY_HOUR}
            SELECT customer_id, toStartOfHour(rated.usage_start) AS hour, resource_id, rated.product AS product,
                rated.meter AS meter, rated.dimension AS dimension, rated.unit AS unit, currency,
                rated.base_divisor AS base_divisor, toStartOfHour(usage_start) AS event_hour,
                sum(rated.base_quantity) AS base_sum, max(rated.base_quantity) AS base_max,
                argMax(rated.base_quantity, rated.usage_start) AS base_latest, max(rated.usage_start) AS latest_at,
                sum(rated.amount) AS amount, count() AS rated_rows, max(inserted_at) AS stored_until,
                now64(6) AS computed_at
            FROM {database}.{USAGE_EVENTS} FINAL ARRAY JOIN rated
            GROUP BY hour, event_hour, customer_id, resource_id, product, meter, dimension, unit, currency,
                base_divisor""",
        ),
        (
            40,
            f"""INSERT INTO {database}.{USAGE_BY_DAY}
            SELECT customer_id, toStartOfDay(hour) AS day, resource_id, product, meter, dimension, unit, currency,
                base_divisor, sum(base_sum), max(base_max), argMax(base_latest, latest_at), max(latest_at),
                sum(amount), sum(rated_rows), max(stored_until), now64(6)
            FROM {database}.{USAGE_BY_HOUR} FINAL
            GROUP BY day, customer_id, resource_id, product, meter, dimension, unit, currency, base_divisor""",
        ),
        (41, f"DROP VIEW IF EXISTS {database}.{USAGE_HOURLY}"),
        # An event's identity holds in storage, across worker restarts and customers: the sink
        # looks each event's (source, id) up here before writing it, keeps the first copy (a
        # repeat is not written again, so its amount stays as first rated) and refuses a
        # conflict. A key-value table, since a flush looks up thousands of random keys. Events
        # stored before carry no digest (0): a later copy is a repeat if it is about the same
        # customer, resource and time.
        (42, f"ALTER TABLE {database}.{USAGE_EVENTS} ADD COLUMN IF NOT EXISTS digest UInt64 DEFAULT 0 AFTER length"),
        (
            43,
            f"""CREATE TABLE IF NOT EXISTS {database}.{EVENT_IDENTITIES} (
                identity String,
                digest UInt64,
                customer_id String,
                resource_id String,
                usage_start DateTime64(3, 'UTC')
            ) ENGINE = EmbeddedRocksDB
            PRIMARY KEY identity""",
        ),
        (
            44,
            f"""INSERT INTO {database}.{EVENT_IDENTITIES}
            SELECT concat(source, char(31), id), digest, customer_id, resource_id, usage_start
            FROM {database}.{USAGE_EVENTS} FINAL""",
        ),
        # Amounts exact until shown: a rollup row keeps the sum of base quantity x unit price (two
        # finite decimals, so their product is exact), divided by the row's divisor where it is
        # read. The rated rows' own amounts, each rounded at 12 places, summed to noise (twelve
        # 5-minute samples of 20 GiB at 0.0002 made 0.003999999996). Levels are priced at the close.
        (
            45,
            f"ALTER TABLE {database}.{USAGE_BY_HOUR} ADD COLUMN IF NOT EXISTS amount_base Decimal(76, 24) AFTER amount",
        ),
        (
            46,
            f"ALTER TABLE {database}.{USAGE_BY_DAY} ADD COLUMN IF NOT EXISTS amount_base Decimal(76, 24) AFTER amount",
        ),
        (
            47,
            f"""INSERT INTO {database}.{USAGE_BY_HOUR}
            SELECT customer_id, toStartOfHour(rated.usage_start) AS hour, resource_id, rated.product AS product,
                rated.meter AS meter, rated.dimension AS dimension, rated.unit AS unit, currency,
                rated.base_divisor AS base_divisor, toStartOfHour(usage_start) AS event_hour,
                sum(rated.base_quantity) AS base_sum, max(rated.base_quantity) AS base_max,
                argMax(rated.base_quantity, rated.usage_start) AS base_latest, max(rated.usage_start) AS latest_at,
                sum(rated.amount) AS amount,
                sum(if(rated.meter IN ('xaas_peak_units', 'xaas_latest_units'), toDecimal256(0, 24),
                    toDecimal256(rated.base_quantity, 12) * rated.unit_price)) AS amount_base,
                count() AS rated_rows, max(inserted_at) AS stored_until, now64(6) AS computed_at
            FROM {database}.{USAGE_EVENTS} FINAL ARRAY JOIN rated
            GROUP BY hour, event_hour, customer_id, resource_id, product, meter, dimension, unit, currency,
                base_divisor""",
        ),
        (
            48,
            f"""INSERT INTO {database}.{USAGE_BY_DAY}
            SELECT customer_id, toStartOfDay(hour) AS day, resource_id, product, meter, dimension, unit, currency,
                base_divisor, sum(base_sum), max(base_max), argMax(base_latest, latest_at), max(latest_at),
                sum(amount), sum(amount_base), sum(rated_rows), max(stored_until), now64(6)
            FROM {database}.{USAGE_BY_HOUR} FINAL
            GROUP BY day, customer_id, resource_id, product, meter, dimension, unit, currency, base_divisor""",
        ),
    ]


def migrate(client: Client, database: str, *, up_to: int | None = None) -> None:
    """Apply every migration (or those up to ``up_to``, as an older release would have);
    safe to run at each start and from several processes."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {database}.{MIGRATIONS} "
        "(version UInt32, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    applied = str(client.command(f"SELECT groupArray(version) FROM {database}.{MIGRATIONS}"))
    done = {int(v) for v in applied.strip("[]").split(",") if v.strip()}
    for version, statement in migrations(database):
        if version in done or (up_to is not None and version > up_to):
            continue
        client.command(statement)
        client.command(f"INSERT INTO {database}.{MIGRATIONS} (version) VALUES ({version:d})")
