"""Usage stored in the first layout (a row per event and meter) survives the move to usage events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import clickhouse_connect

from api.usage_queries import LineScope, UsageQueries
from billing.invoices import UsageScope
from schemas.clickhouse import migrate
from storage.connection import ClientPool

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
