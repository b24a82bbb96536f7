"""Period-close benchmark: 10,000 customers x 20 priced items, from rated usage in ClickHouse.

Stores a month of daily rated-usage rows per customer and item in an embedded chDB, then times
``close_period`` (read the totals through FINAL, build every invoice, write the drafts) and,
separately, issuing every draft. Prints one JSON line: ``close_s``, ``issue_all_s`` (if asked),
invoice and line counts, and ``peak_rss_mb`` of this process (chDB runs inside it).
Target on the 2-core reference machine: close under 60 s.

Run: ``make bench-close`` (or ``python bench/period_close.py --help``).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import clickhouse_connect
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from billing.catalog import Catalog  # noqa: E402
from billing.period_close import close_period  # noqa: E402
from billing.periods import Period  # noqa: E402
from billing.pricing import PriceBook  # noqa: E402
from pipeline.processing import usage_events  # noqa: E402
from schemas.records import ACCEPTED_SCHEMA, RATED_SCHEMA  # noqa: E402
from storage.billed_usage import PeriodUsage  # noqa: E402
from storage.ledger import Ledger  # noqa: E402
from storage.schema import migrate  # noqa: E402
from storage.usage_store import UsageStore  # noqa: E402

DATABASE = "bench"
PERIOD = Period.parse("2026-10")
FROM = "2020-01-01T00:00:00Z"
METERS = [
    ("vcpu_hours", "", "vCPU-hour"),
    ("ram_gib_hours", "", "GiB-hour"),
    ("disk_gib_hours", "ssd", "GiB-hour"),
    ("disk_gib_hours", "hdd", "GiB-hour"),
    ("disk_gib_hours", "nvme", "GiB-hour"),
    ("net_rx_gb", "", "GB"),
    ("net_tx_gb", "", "GB"),
    ("vdc_cpu_ghz_hours", "", "GHz-hour"),
    ("vdc_ram_gib_hours", "", "GiB-hour"),
    ("vdc_storage_gib_hours", "", "GiB-hour"),
    *[("xaas_units", f"sku_{n:02d}", "unit") for n in range(8)],
]
"""18 metered items; with two subscriptions per customer, 20 priced items each."""


def bench_catalog(customers: int) -> Catalog:
    plans: list[dict[str, Any]] = []
    for number, (meter, dimension, _unit) in enumerate(METERS):
        plan: dict[str, Any] = {"meter": meter, "dimension": dimension or "*", "effective_from": FROM}
        if number % 4 == 1:
            tiers = [{"up_to": "500", "unit_price": "0.010"}, {"unit_price": "0.008"}]
            plan |= {"model": "graduated", "tiers": tiers}
        elif number % 4 == 2:
            plan |= {"model": "per_unit", "unit_price": "0.002", "free_quantity": "100"}
        else:
            plan |= {"model": "per_unit", "unit_price": f"0.00{number % 9 + 1}"}
        plans.append(plan)
    partners = [
        {"id": f"partner-{n}", "name": f"Partner {n}", "invoice_prefix": f"P{n}", "discount_percent": "15"}
        for n in range(10)
    ]
    ids = [f"cust-{n:05d}" for n in range(customers)]
    return Catalog.model_validate(
        {
            "currency": "EUR",
            "provider": {"id": "acme", "name": "Acme", "invoice_prefix": "ACME"},
            "partners": partners,
            "tax_rates": [{"jurisdiction": "FR", "rate_percent": "20"}],
            "products": [{"id": "support", "name": "Support"}, {"id": "backup-pack", "name": "Backup pack"}],
            "price_lists": [
                {
                    "seller_id": "acme",
                    "plans": plans,
                    "fees": [
                        {"product_id": "support", "amount": "49", "effective_from": FROM},
                        {"product_id": "backup-pack", "amount": "12", "setup_fee": "50", "effective_from": FROM},
                    ],
                }
            ],
            "customers": [
                {"id": c, "name": c, **({"partner_id": f"partner-{n // 10 % 10}"} if n % 10 == 0 else {})}
                for n, c in enumerate(ids)
            ],
            "subscriptions": [
                {"id": f"{c}-{product}", "customer_id": c, "product_id": product, "start": "2026-09-17"}
                for c in ids
                for product in ("support", "backup-pack")
            ],
        }
    )


def store_usage(client: Any, customers: int, days: int) -> int:
    """One rated row per customer, item and day (one stored event per customer and day), written
    a day at a time to bound memory."""
    store = UsageStore(client, DATABASE)
    rows = 0
    for day in range(days):
        start = PERIOD.start + timedelta(days=day)
        customer = [f"cust-{n:05d}" for n in range(customers) for _ in METERS]
        rated = pl.DataFrame(
            {
                "event_id": [f"{day}-{n}" for n in range(customers) for _ in METERS],
                "source": "bench",
                "event_type": "vm.sample",
                "customer_id": customer,
                "resource_id": [f"{c}-r" for c in customer],
                "product": "vm",
                "meter": [m for _ in range(customers) for m, _d, _u in METERS],
                "dimension": [d for _ in range(customers) for _m, d, _u in METERS],
                "unit": [u for _ in range(customers) for _m, _d, u in METERS],
                "usage_start": start,
                "usage_end": start + timedelta(days=1),
                "quantity": Decimal("24.5"),
                "unit_price": Decimal("0.004"),
                "amount": Decimal("0.098"),
                "base_quantity": Decimal(88_200),
                "base_divisor": 3600,
                "currency": "EUR",
            },
            schema=RATED_SCHEMA,
        )
        events = pl.DataFrame(
            {
                "id": [f"{day}-{c}" for c in range(customers)],
                "type": "vm.sample",
                "source": "bench",
                "time": start + timedelta(days=1),
                "customer_id": customer[:: len(METERS)],
                "resource_id": [f"{c}-r" for c in customer[:: len(METERS)]],
                "message_id": "",
                "offset": 0,
                "length": 0,
                "digest": [n + 1 for n in range(customers)],  # each event its own content
                "usage_start": start,
                "usage_end": start + timedelta(days=1),
            },
            schema=ACCEPTED_SCHEMA,
        )
        store.write(
            usage_events(events.lazy(), rated.lazy(), PriceBook("EUR", ())).collect().to_arrow(), datetime.now(UTC)
        )
        rows += rated.height
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=31, help="rated rows per customer and item")
    parser.add_argument("--issue", action="store_true", help="also issue every draft of the period at once")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="meterline-close-") as data:
        client = clickhouse_connect.get_client(dsn=f"chdb://{data}/clickhouse")
        migrate(client, DATABASE)
        catalog = bench_catalog(args.customers)
        loaded = time.perf_counter()
        rows = store_usage(client, args.customers, args.days)
        load_s = time.perf_counter() - loaded
        ledger = Ledger(client, DATABASE)
        started = time.perf_counter()
        result = close_period(ledger, PeriodUsage(client, DATABASE), catalog, PERIOD, datetime.now(UTC))
        close_s = time.perf_counter() - started
        figures: dict[str, Any] = {
            "benchmark": "period_close",
            "customers": args.customers,
            "priced_items_per_customer": len(METERS) + 2,
            "rated_rows": rows,
            "load_s": round(load_s, 2),
            "close_s": round(close_s, 2),
            "invoices": result.drafted,
            "lines": int(str(client.command(f"SELECT count() FROM {DATABASE}.invoice_lines"))),
        }
        if args.issue:
            started = time.perf_counter()
            issued = ledger.issue_period(PERIOD.name, datetime.now(UTC), catalog.invoice_prefixes())
            figures["issue_all_s"] = round(time.perf_counter() - started, 2)
            figures["issued"] = len(issued)
        figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        figures["date"] = datetime.now(UTC).date().isoformat()
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
