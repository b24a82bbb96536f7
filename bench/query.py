"""Read-side benchmark: a year of a fleet's usage, then the dashboard queries against it.

Loads a synthetic fleet (``--vms`` VMs of ``--customers`` customers of unequal sizes, a sample
every 5 minutes with five rated meters each) into an embedded chDB through the sink's own
storage code (``sinks.clickhouse.UsageStore``: events written, rollups recounted), a day at a
time, for the year that ends at the current hour. Then times, through the API's query code:

- one customer's month by day (``UsageQueries.usage``, granularity day, by meter, and its
  rows written as the API's JSON);
- one customer's month by hour and resource of one meter, a page of ``RESOURCES_PER_PAGE``
  resources as a chart shows them (``UsageQueries.resource_page``, then granularity hour, by
  resource; the same), for a customer drawn at random and for the median customer by size, and
  the median customer's page of every meter;
- the provider's top 20 customers by cost this month and over the last full month (``Dashboards.costs``);
- 16 clients at once, each running a mix of those.

Prints one JSON line: p50/p95 per query in ms, the concurrent p95, events loaded, load time,
disk bytes per event. Targets on the 2-core reference machine: single query p95 <= 50 ms,
16 concurrent clients p95 <= 250 ms. Run: ``make bench-query`` (``--vms 96`` for a quick run).
"""

from __future__ import annotations

import argparse
import json
import queue
import random
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import clickhouse_connect
import numpy as np
import polars as pl
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.usage_formats import rows_json  # noqa: E402
from billing.adapters.catalog_file import load_catalog  # noqa: E402
from billing.pricing import PriceBook  # noqa: E402
from billing.scope import EVERYTHING  # noqa: E402
from pipeline.processing import usage_events  # noqa: E402
from schemas.records import ACCEPTED_SCHEMA, RATED_SCHEMA  # noqa: E402
from storage.connection import ClientPool  # noqa: E402
from storage.dashboards import CostGroup, CostWindow, Dashboards  # noqa: E402
from storage.schema import migrate  # noqa: E402
from storage.tables import USAGE_EVENTS  # noqa: E402
from storage.usage_queries import Granularity, GroupBy, ResourcePage, UsageQueries, UsageWindow  # noqa: E402
from storage.usage_store import UsageStore  # noqa: E402

DATABASE = "meterline"
INTERVAL_S = 300
RESOURCES_PER_PAGE = 10
# meter, dimension, unit, divisor to the unit, price in millionths of EUR per unit
METERS = [
    ("vcpu_hours", "", "vCPU-hour", 3600, 25_000),
    ("ram_gib_hours", "", "GiB-hour", 1024 * 3600, 5_000),
    ("disk_gib_hours", "ssd", "GiB-hour", 3600, 100),
    ("net_rx_gb", "", "GB", 10**9, 10_000),
    ("net_tx_gb", "", "GB", 10**9, 20_000),
]


def exact(scaled: pa.Array) -> pa.Array:
    """Integers counted in 10^-12 as Decimal(38, 12), the stored money and quantity type: the
    same 128-bit integers, read at scale 12."""
    whole = scaled.cast(pa.decimal128(38, 0))
    return pa.Array.from_buffers(pa.decimal128(38, 12), len(whole), whole.buffers())


def fleet(vms: int, customers: int, seed: int) -> pl.DataFrame:
    """VMs with their customer (a few large ones, many small), size and disk."""
    draw = np.random.default_rng(seed)
    weights = 1 / np.arange(1, customers + 1) ** 0.8
    owner = draw.choice(customers, size=vms, p=weights / weights.sum())
    return pl.DataFrame(
        {
            "resource_id": [f"vm-{n:05d}" for n in range(vms)],
            "customer_id": [f"cust-{c:04d}" for c in owner],
            "vcpu": draw.choice([1, 2, 4, 8, 16], size=vms),
            "ram_mb": draw.choice([2048, 4096, 8192, 16384, 65536], size=vms),
            "disk_gib": draw.choice([20, 40, 100, 250, 1000], size=vms),
        }
    )


def day_of_usage(vms: pl.DataFrame, day: datetime, seed: int) -> pa.Table:
    """Every VM's samples of one day as usage events (``USAGE_EVENT_SCHEMA``), as the worker
    publishes them: accepted events joined with their rated rows by ``usage_events``."""
    starts = pl.DataFrame(
        {"usage_start": [day + timedelta(seconds=INTERVAL_S * k) for k in range(86_400 // INTERVAL_S)]}
    )
    starts = starts.with_columns(pl.col("usage_start").cast(pl.Datetime("ms", "UTC")))
    events = vms.join(starts, how="cross").with_columns(
        usage_end=pl.col("usage_start") + pl.duration(seconds=INTERVAL_S),
        id=pl.concat_str([pl.col("resource_id"), pl.lit("-"), pl.col("usage_start").dt.epoch("s").cast(pl.String)]),
    )
    draw = np.random.default_rng(seed)
    bases = {
        "vcpu_hours": events["vcpu"].to_numpy() * INTERVAL_S,
        "ram_gib_hours": events["ram_mb"].to_numpy() * INTERVAL_S,
        "disk_gib_hours": events["disk_gib"].to_numpy() * INTERVAL_S,
        "net_rx_gb": draw.integers(0, 2 * 10**9, size=events.height),
        "net_tx_gb": draw.integers(0, 5 * 10**8, size=events.height),
    }
    rated_parts = []
    for meter, dimension, unit, divisor, price in METERS:
        base = bases[meter].astype(np.int64)
        scaled = base.astype(object) * 10**12  # Python integers: a GB's bytes at 10^-12 pass int64
        quantity = scaled // divisor
        amount = quantity * price // 10**6
        part = events.select("id", "customer_id", "resource_id", "usage_start", "usage_end").rename({"id": "event_id"})
        part = part.with_columns(
            source=pl.lit("bench://fleet"),
            event_type=pl.lit("vm.sample"),
            product=pl.lit("vm"),
            meter=pl.lit(meter),
            dimension=pl.lit(dimension),
            unit=pl.lit(unit),
            quantity=pl.from_arrow(exact(pa.array(quantity, pa.decimal128(38, 0)))),
            unit_price=pl.from_arrow(exact(pa.array(np.full(events.height, price * 10**6, dtype=np.int64)))),
            amount=pl.from_arrow(exact(pa.array(amount, pa.decimal128(38, 0)))),
            base_quantity=pl.from_arrow(exact(pa.array(scaled, pa.decimal128(38, 0)))),
            base_divisor=pl.lit(divisor, dtype=pl.UInt32),
            currency=pl.lit("EUR"),
        )
        rated_parts.append(part.select(list(RATED_SCHEMA)).cast(RATED_SCHEMA))  # type: ignore[arg-type]
    accepted = events.with_columns(
        type=pl.lit("vm.sample"),
        source=pl.lit("bench://fleet"),
        time=pl.col("usage_end"),
        message_id=pl.lit(""),
        offset=pl.lit(0, dtype=pl.UInt32),
        length=pl.lit(0, dtype=pl.UInt32),
        digest=pl.col("id").hash(),  # each event its own content, as the worker's digest says
    ).select(list(ACCEPTED_SCHEMA))
    rated = pl.concat(rated_parts)
    return usage_events(accepted.lazy(), rated.lazy(), PriceBook("EUR", ())).collect().to_arrow()


def load(client: Any, vms: pl.DataFrame, first_day: datetime, end: datetime) -> int:
    """Store every day up to ``end``, the next day's events made while a day is written."""
    store = UsageStore(client, DATABASE)
    days = []
    day = first_day
    while day < end:
        days.append(day)
        day += timedelta(days=1)
    made: queue.Queue[pa.Table | None] = queue.Queue(maxsize=2)

    def make() -> None:
        for day in days:
            usage = day_of_usage(vms, day, seed=int(day.timestamp()))
            if day + timedelta(days=1) > end:  # the current day: up to the current hour
                before_end = pa.compute.less(usage["usage_start"], pa.scalar(end, pa.timestamp("ms", "UTC")))
                usage = usage.filter(before_end)
            made.put(usage)
        made.put(None)

    maker = threading.Thread(target=make, daemon=True)
    maker.start()
    events = 0
    for day in days:
        usage = made.get()
        if usage is None:
            break
        store.write(usage, day + timedelta(days=1, minutes=1))
        events += usage.num_rows
    maker.join()
    return events


def timed(call: Callable[[], Any]) -> float:
    began = time.perf_counter()
    call()
    return (time.perf_counter() - began) * 1000


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vms", type=int, default=960, help="960 VMs sampled every 5 minutes: 100.9 M events a year")
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=40, help="timed runs of each query")
    parser.add_argument("--data-dir", type=Path, help="keep (or reuse) the loaded data here")
    args = parser.parse_args()
    keep = args.data_dir is not None
    data = args.data_dir or Path(tempfile.mkdtemp(prefix="meterline-query-"))
    client = clickhouse_connect.get_client(dsn=f"chdb://{data}/clickhouse")
    migrate(client, DATABASE)
    vms = fleet(args.vms, args.customers, seed=1)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    first_day = (end - timedelta(days=args.days)).replace(hour=0)
    loaded = int(str(client.command(f"SELECT count() FROM {DATABASE}.{USAGE_EVENTS}")))
    load_s = 0.0
    if not loaded:
        began = time.perf_counter()
        loaded = load(client, vms, first_day, end)
        load_s = time.perf_counter() - began
    disk = int(
        str(
            client.command(
                f"SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND database = '{DATABASE}' "
                f"AND table IN ('{USAGE_EVENTS}', 'usage_hours', 'usage_days')"
            )
        )
    )
    pool = ClientPool(lambda: clickhouse_connect.get_client(dsn=f"chdb://{data}/clickhouse"), 16)
    queries = UsageQueries(pool, DATABASE)
    dashboards = Dashboards(pool, DATABASE)
    catalog = load_catalog(ROOT / "billing" / "catalog.yaml")
    customers = vms["customer_id"].unique().sort().to_list()
    months = []
    month = (first_day.replace(day=1) + timedelta(days=32)).replace(day=1)
    while month + timedelta(days=32) <= end:
        following = (month + timedelta(days=32)).replace(day=1)
        months.append((month, following))
        month = following
    this_month = end.replace(day=1, hour=0)
    last_full = months[-1]
    draw = random.Random(3)  # noqa: S311 - which customer and month to ask for, not a secret

    def by_day() -> None:
        start, stop = draw.choice(months)
        window = UsageWindow(draw.choice(customers), start, stop)
        rows_json(queries.usage(EVERYTHING, window, Granularity.DAY, GroupBy.METER))

    def hour_by_resource_page(customer: str, meter: str | None) -> None:
        """What a chart of hourly usage per resource shows: a page of resources, of one meter
        (``meter``; None for every meter, as a table of them shows)."""
        start, stop = draw.choice(months)
        window = UsageWindow(customer, start, stop)
        scope = EVERYTHING.limited_to(None if meter is None else [meter])
        page, _next = queries.resource_page(scope, window, ResourcePage(RESOURCES_PER_PAGE))
        window = replace(window, resources=tuple(page))
        rows_json(queries.usage(scope, window, Granularity.HOUR, GroupBy.RESOURCE))

    sizes = vms.group_by("customer_id").len().sort("len", "customer_id")
    median_customer = str(sizes["customer_id"][sizes.height // 2])
    meters = [meter for meter, *_ in METERS]

    def by_hour_and_resource() -> None:
        hour_by_resource_page(draw.choice(customers), draw.choice(meters))

    def by_hour_and_resource_median_customer() -> None:
        hour_by_resource_page(median_customer, draw.choice(meters))

    def by_hour_and_resource_every_meter_median_customer() -> None:
        hour_by_resource_page(median_customer, None)

    def top20_this_month() -> None:
        window = CostWindow(this_month, end, Granularity.DAY)
        dashboards.costs(EVERYTHING, catalog, window, CostGroup.CUSTOMER, 20)

    def top20_last_full_month() -> None:
        window = CostWindow(*last_full, Granularity.DAY)
        dashboards.costs(EVERYTHING, catalog, window, CostGroup.CUSTOMER, 20)

    mix = [by_day, by_hour_and_resource, top20_this_month, top20_last_full_month]
    timed_alone = [*mix, by_hour_and_resource_median_customer, by_hour_and_resource_every_meter_median_customer]
    for query in mix:  # warm: first compilations and caches are not what a dashboard sees
        query()
    figures: dict[str, Any] = {"benchmark": "query", "events": loaded, "vms": args.vms, "customers": len(customers)}
    figures["load_s"] = round(load_s, 1) if load_s else "reused"
    figures["disk_bytes_per_event"] = round(disk / loaded, 1)
    for query in timed_alone:
        figures[query.__name__] = percentiles([timed(query) for _ in range(args.repeat)])
    concurrent: list[float] = []
    lock = threading.Lock()

    def client_loop(n: int) -> None:
        own = random.Random(n)  # noqa: S311
        for _ in range(args.repeat // 2):
            took = timed(own.choice(mix))
            with lock:
                concurrent.append(took)

    threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(16)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    figures["concurrent_16"] = {
        **percentiles(concurrent),
        "queries_per_s": round(len(concurrent) / (time.perf_counter() - began), 1),
    }
    figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    figures["date"] = datetime.now(UTC).date().isoformat()
    print(json.dumps(figures))
    if not keep:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
