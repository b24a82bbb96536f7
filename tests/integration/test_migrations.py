"""Usage stored in the first layout (a row per event and meter) survives the move to usage events."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import clickhouse_connect

from billing.invoices import UsageScope
from storage import schema
from storage.connection import ClientPool
from storage.rollups import drift
from storage.schema import SCHEMA_DOC, current_schema, migrate, migrations
from storage.usage_queries import LineScope, UsageQueries
from storage.usage_store import in_every_row
from tests.factories import AT, vm_sample
from tests.integration.test_identities import frame

DB = "meterline"
END = datetime(2026, 10, 5, 10, 0, tzinfo=UTC)
START = END - timedelta(minutes=5)
BILLED_JSON = '{"id":"e-billed","note":"kept as received"}'


def test_rows_of_the_first_layout_are_converted_and_still_drill_down(tmp_path):
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path}")
    migrate(client, DB, up_to=10)
    raw = ["id", "type", "source", "time", "customer_id", "resource_id", "event", "inserted_at"]
    client.insert(
        f"{DB}.raw_events",
        [
            ["e-billed", "vm.sample", "s", END, "c1", "vm-1", BILLED_JSON, END],
            ["e-nothing-billed", "vm.sample", "s", END, "c1", "vm-2", '{"id":"e-nothing-billed"}', END],
        ],
        column_names=raw,
    )
    rated = ["event_id", "event_type", "customer_id", "resource_id", "product", "meter", "dimension", "unit"]
    rated += ["usage_start", "usage_end", "quantity", "unit_price", "amount", "currency", "inserted_at"]
    cpu = ["e-billed", "vm.sample", "c1", "vm-1", "vm", "vcpu_hours", "", "vCPU-hour", START, END]
    disk = ["e-billed", "vm.sample", "c1", "vm-1", "vm", "disk_gib_hours", "ssd", "GiB-hour", START, END]
    client.insert(
        f"{DB}.rated_usage",
        [
            [*cpu, Decimal("0.5"), Decimal("0.025"), Decimal("0.0125"), "EUR", END],
            [*disk, Decimal("10"), Decimal("0.0001"), Decimal("0.001"), "EUR", END],
        ],
        column_names=rated,
    )

    migrate(client, DB)

    rows = client.query(
        f"SELECT event_id, meter, dimension, quantity, amount, usage_start FROM {DB}.rated_usage ORDER BY meter"
    ).result_rows
    assert [row[:5] for row in rows] == [
        ("e-billed", "disk_gib_hours", "ssd", Decimal("10"), Decimal("0.001")),
        ("e-billed", "vcpu_hours", "", Decimal("0.5"), Decimal("0.0125")),
    ]
    assert {row[5].replace(tzinfo=UTC) for row in rows} == {START}
    unbilled = client.query(
        f"SELECT length(rated.meter), usage_start FROM {DB}.usage_events FINAL WHERE id = 'e-nothing-billed'"
    ).result_rows
    assert [(n, at.replace(tzinfo=UTC)) for n, at in unbilled] == [(0, END)], "kept, at its own time"
    assert client.command(f"SELECT count() FROM {DB}.rated_usage_v1") == 2, "the old table is kept"
    exact = client.query(f"SELECT meter, base_quantity, base_divisor FROM {DB}.rated_usage ORDER BY meter").result_rows
    assert exact == [("disk_gib_hours", Decimal("10"), 1), ("vcpu_hours", Decimal("0.5"), 1)], (
        "old rows: exact as stored"
    )
    end = END + timedelta(days=1)
    line = LineScope(["c1"], "disk_gib_hours", (UsageScope("ssd", START, end),), START, end, stored_by=end)
    assert UsageQueries(ClientPool(lambda: client, 1), DB).line_events(line, limit=10, offset=0) == [BILLED_JSON]


def test_rollups_made_before_they_were_added_to_are_carried_over(tmp_path):
    """A store whose rollups were rewritten by the sink (migrations 35-48) keeps its figures
    when they become tables the engine adds to (49-53): one 5-minute sample of 2 vCPU is 600
    vCPU-seconds, a sixth of a vCPU-hour, at 0.025 = 0.004166666667 (rounded at 12 places)."""
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path}")
    migrate(client, DB, up_to=46)
    usage = frame([vm_sample(at=AT + timedelta(minutes=5))])
    client.insert_arrow(f"{DB}.usage_events", usage.append_column("inserted_at", in_every_row(END, usage.num_rows)))

    migrate(client, DB)

    (hour,) = client.query(
        f"SELECT sum(base_sum), sum(rated_rows), sum(amount) FROM {DB}.usage_hours FINAL WHERE meter = 'vcpu_hours'"
    ).result_rows
    assert hour == (Decimal(600), 1, Decimal("0.004166666667"))
    assert drift(client, DB) == 0
    assert {"usage_by_hour", "usage_by_day"}.isdisjoint(client.query(f"SHOW TABLES FROM {DB}").result_columns[0])


def test_processes_starting_at_once_migrate_once(tmp_path):
    """Two clients (as two processes on one server would) migrate a new store at the same time:
    each migration runs once (run twice, migration 14's rename would fail, and versions would be
    recorded twice)."""
    clients = [clickhouse_connect.get_client(dsn=f"chdb://{tmp_path}") for _ in range(2)]
    ready = threading.Barrier(2)
    failures: list[BaseException] = []

    def start(client: Any) -> None:
        ready.wait()
        try:
            migrate(client, DB)
        except BaseException as error:  # noqa: BLE001 - reported by the test
            failures.append(error)

    threads = [threading.Thread(target=start, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    versions = clients[0].query(f"SELECT version FROM {DB}.schema_migrations ORDER BY version").result_columns[0]
    assert versions == list(range(1, len(migrations(DB)) + 1))
    assert clients[0].command(f"EXISTS TABLE {DB}.schema_migration_lock") == 0, "the lock is given back"


def test_a_lock_left_by_a_process_that_died_is_taken_over(tmp_path, monkeypatch):
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path}")
    client.command(f"CREATE DATABASE {DB}")
    client.command(f"CREATE TABLE {DB}.schema_migration_lock (holder String) ENGINE = Memory")
    monkeypatch.setattr(schema, "STALE_LOCK", timedelta(seconds=-1))

    migrate(client, DB)

    assert schema.applied_versions(client, DB) == {m.version for m in migrations(DB)}


def test_the_documented_schema_is_what_the_migrations_make(engine):
    assert current_schema(engine, DB) == SCHEMA_DOC.read_text(), "run `python -m storage.schema`"
