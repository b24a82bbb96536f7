"""Portal pages at the server: a customer with a year of hourly usage.

Loads ``bench/query.py``'s fleet for a year (by default ``--vms 107 --customers 1``: the largest
customer of that benchmark's 960-VM fleet, alone in the store, a sample every 5 minutes with
five rated meters: 11.2 M events) into chDB through the sink's storage code, closes and issues
the last full month, then times each page of that customer's portal through the API
application in this process (FastAPI's TestClient: the server's time, no network; a Tansu
broker beside it, as ``make run`` has), ``--repeat`` times each after one warm-up.

Prints one JSON line: p50 / p95 / max per page in ms, and each page's size. Target on the
2-core reference machine: every page under 300 ms. Run: ``make bench-portal``
(``BENCH_PORTAL_DIR=path`` keeps the loaded data and reuses it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import clickhouse_connect
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.query import DATABASE, fleet, load, percentiles  # noqa: E402
from storage.schema import migrate  # noqa: E402
from storage.tables import USAGE_BY_DAY, USAGE_BY_HOUR, USAGE_BY_MONTH, USAGE_EVENTS  # noqa: E402


def expect(holds: bool, otherwise: str) -> None:
    if not holds:
        raise SystemExit(otherwise)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def catalog_of(customers: list[str], path: Path) -> Path:
    """The demo catalog with the fleet's customers in place of its own."""
    document = yaml.safe_load((ROOT / "billing" / "catalog.yaml").read_text())
    document["customers"] = [{"id": customer, "name": f"Customer {customer}"} for customer in customers]
    document["subscriptions"] = []
    document["one_time_charges"] = []
    path.write_text(yaml.safe_dump(document))
    return path


def loaded_store(data: Path, vms: int, customers: int, days: int) -> tuple[list[str], int, float]:
    client = clickhouse_connect.get_client(dsn=f"chdb://{data}/clickhouse")
    migrate(client, DATABASE)
    fleet_vms = fleet(vms, customers, seed=1)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    events = int(str(client.command(f"SELECT count() FROM {DATABASE}.{USAGE_EVENTS}")))
    load_s = 0.0
    if not events:
        began = time.perf_counter()
        events = load(client, fleet_vms, (end - timedelta(days=days)).replace(hour=0), end)
        load_s = time.perf_counter() - began
    settle(client)
    client.close()
    return fleet_vms["customer_id"].unique().sort().to_list(), events, load_s


def settle(client: Any) -> None:
    """Merge the rollups' parts, as a running deployment's background merges do between loads:
    the load ends with parts the engine would merge next (a month's days in 5 parts of 126,000
    rows where merged they are 16,000), and chDB merges only while its process writes."""
    for rollup in (USAGE_BY_HOUR, USAGE_BY_DAY, USAGE_BY_MONTH):
        client.command(f"OPTIMIZE TABLE {DATABASE}.{rollup} FINAL")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vms", type=int, default=107)
    parser.add_argument("--customers", type=int, default=1)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--data-dir", type=Path, help="keep (or reuse) the loaded data here")
    args = parser.parse_args()
    data = args.data_dir or Path(tempfile.mkdtemp(prefix="meterline-portal-"))
    data.mkdir(parents=True, exist_ok=True)
    customers, events, load_s = loaded_store(data, args.vms, args.customers, args.days)

    from meterline.brokers import TansuBroker

    broker = TansuBroker(free_port(), data / "broker.log")
    broker.start()
    admin = f"mlk_admin_{secrets.token_urlsafe(24)}"
    os.environ.update(
        {
            "METERLINE_DATA_DIR": str(data),
            "METERLINE_CATALOG": str(catalog_of(customers, data / "catalog.yaml")),
            "METERLINE_KAFKA_BOOTSTRAP": broker.bootstrap,
            "METERLINE_SINK_IN_API": "false",
            "METERLINE_AUTO_CLOSE": "false",
            "METERLINE_ADMIN_KEY": admin,
            "METERLINE_LATE_USAGE_MONTHS": "24",
        }
    )
    try:
        figures = time_pages(customers, admin, args.repeat)
    finally:
        broker.stop()
    figures = {"benchmark": "portal", "events": events, "vms": args.vms, **figures}
    figures["load_s"] = round(load_s, 1) if load_s else "reused"
    figures["date"] = datetime.now(UTC).date().isoformat()
    print(json.dumps(figures))
    if args.data_dir is None:
        shutil.rmtree(data, ignore_errors=True)


def time_pages(customers: list[str], admin: str, repeat: int) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from meterline.brokers import ensure_topics
    from meterline.settings import Settings

    settings = Settings()
    ensure_topics(settings)
    largest = customers[0]
    now = datetime.now(UTC)
    last_month = (now.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    with TestClient(create_app(settings)) as api:
        bearer = {"Authorization": f"Bearer {admin}"}
        if not api.get(f"/v1/invoices?period={last_month}", headers=bearer).json():
            closed = api.post(f"/v1/periods/{last_month}/close?force=true", headers=bearer)
            expect(closed.status_code == 200, closed.text)
        api.post(f"/v1/periods/{last_month}/issue", headers=bearer)
        made = api.post("/v1/keys", headers=bearer, json={"name": "bench", "role": "customer", "party_id": largest})
        form = api.get("/portal/sign-in")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        if csrf is None:
            raise SystemExit(f"no sign-in form: {form.text[:300]}")
        signed = api.post("/portal/sign-in", data={"csrf": csrf.group(1), "credential": made.json()["key"]})
        expect(signed.status_code in (200, 303), signed.text)
        invoice_id = f"{last_month}.acme.{largest}"
        invoice = api.get(f"/v1/invoices/{invoice_id}", headers=bearer).json()
        vcpu = next(line["line_no"] for line in invoice["lines"] if line["meter"] == "vcpu_hours")
        pages = {
            "consumption": f"/portal/customers/{largest}",
            "usage_month_by_day": f"/portal/customers/{largest}/usage",
            "usage_month_by_hour_and_resource": f"/portal/customers/{largest}/usage?granularity=hour&group_by=resource",
            "usage_last_month_by_hour_and_resource": (
                f"/portal/customers/{largest}/usage?granularity=hour&group_by=resource"
                f"&from={last_month}-01&to={(now.replace(day=1) - timedelta(days=1)).date()}"
            ),
            "usage_year_by_month": (
                f"/portal/customers/{largest}/usage?from={(now - timedelta(days=364)).date()}&granularity=month"
            ),
            "invoices": "/portal/invoices",
            "invoice": f"/portal/invoices/{invoice_id}",
            "invoice_line_vcpu": f"/portal/invoices/{invoice_id}/lines/{vcpu}",
            "credit": f"/portal/credit/{largest}",
        }
        figures: dict[str, Any] = {"invoice_lines": len(invoice["lines"])}
        for name, path in pages.items():
            first = api.get(path, follow_redirects=False)
            expect(first.status_code == 200, f"{path}: {first.status_code} {first.text[:300]}")
            took = []
            for _ in range(repeat):
                began = time.perf_counter()
                api.get(path, follow_redirects=False)
                took.append((time.perf_counter() - began) * 1000)
            figures[name] = {**percentiles(took), "max_ms": round(max(took), 1), "bytes": len(first.content)}
    figures["consumption_reads_at_a_months_end"] = consumption_at_months_end(settings, largest, now, repeat)
    return figures


def consumption_at_months_end(settings: Any, customer: str, now: datetime, repeat: int) -> dict[str, float]:
    """The consumption page's reads as they would be at the last month's end (half an hour before
    it), through the storage code: the page itself reads the month so far, which on the bench's
    day may be a few days."""
    from billing.adapters.catalog_file import load_catalog
    from billing.scope import Scope
    from storage.connection import ClientPool
    from storage.dashboards import CostGroup, CostWindow, Dashboards
    from storage.usage_queries import Granularity

    catalog = load_catalog(settings.catalog)
    client = clickhouse_connect.get_client(dsn=settings.effective_clickhouse_dsn)
    dashboards = Dashboards(ClientPool(lambda: client, 1), DATABASE)
    scope = Scope(customers=frozenset({customer}), parties=frozenset({customer}))
    end = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0) - timedelta(minutes=30)
    start = end.replace(day=1, hour=0, minute=0)

    def reads() -> None:
        dashboards.by_resource(scope, start, end)
        dashboards.recent_costs(scope, end)
        dashboards.costs(scope, catalog, CostWindow(start, end, Granularity.HOUR), CostGroup.CUSTOMER, None)

    reads()
    took = []
    for _ in range(repeat):
        began = time.perf_counter()
        reads()
        took.append((time.perf_counter() - began) * 1000)
    return {**percentiles(took), "max_ms": round(max(took), 1)}


if __name__ == "__main__":
    main()
