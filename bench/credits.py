"""Prepaid credit under load on the embedded default: 10,000 pre-pay customers burning at once.

Each customer holds 10.00 and a provider rule alerts under 5.00 to a webhook receiver here.
Usage is pushed for every customer in two rounds: the first leaves 7.75 each, the second crosses
the threshold for all of them at once.

Prints one JSON line:
- ``balance_lag_p50_s`` / ``balance_lag_p99_s``: for sampled customers in the first round, from
  the moment the usage API shows the round's usage to the moment the balance reflects it;
- ``alert_p50_s`` / ``alert_p99_s``: from the POST of the batch holding the usage event that
  crosses a customer's threshold to its signed webhook received, over every customer;
- ``alerts``: how many customers' alerts arrived (each once: a repeat is counted apart).

Run: ``make bench-credits`` (``python bench/credits.py --help`` for sizes). Figures on the 2-core
reference machine are in the README.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.pipeline import start_embedded  # noqa: E402
from schemas.events import encode_batch  # noqa: E402
from tests.factories import catalog_document, xaas_usage  # noqa: E402
from tests.integration.harness import free_port, wait_for  # noqa: E402

GRANT, THRESHOLD = Decimal("10.00"), Decimal("5.00")
RESTORE_PRICE = Decimal("0.045")
ROUNDS = (Decimal(50), Decimal(100))
"""GB restored per customer in each round: 2.25 leaves 7.75, then 4.50 leaves 3.25 (under 5.00)."""
BATCH = 1000


class Receiver:
    """Records when each alert's message first arrived; a repeat is counted, not recorded."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.repeats = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - the standard library's name
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
                with receiver.lock:
                    if body["customer_id"] in receiver.arrived:
                        receiver.repeats += 1
                    else:
                        receiver.arrived[body["customer_id"]] = time.time()
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def catalog(customers: list[str]) -> dict[str, Any]:
    document = catalog_document()
    document["customers"] = [{"id": c, "name": c, "billing": "prepay"} for c in customers]
    document["subscriptions"], document["one_time_charges"] = [], []
    return document


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 3) if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--sampled", type=int, default=200, help="customers whose balance lag is measured")
    args = parser.parse_args()
    customers = [f"c-{n:05d}" for n in range(args.customers)]
    receiver = Receiver()
    path = Path(f"/tmp/bench-credits-catalog-{receiver.port}.yaml")
    path.write_text(yaml.safe_dump(catalog(customers)))
    environment = {
        "METERLINE_CATALOG": str(path),
        "METERLINE_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "METERLINE_RATE_LIMIT_PER_S": "1000000",
        "METERLINE_RATE_LIMIT_BURST": "1000000",
        "METERLINE_INGEST_RATE_LIMIT_PER_S": "1000000",
        "METERLINE_INGEST_RATE_LIMIT_BURST": "1000000",
    }
    with start_embedded("meterline-bench-credits-", 2, **environment) as system:
        http = httpx.Client(base_url=system.url, timeout=60, headers={"Authorization": f"Bearer {system.admin_key}"})
        began = datetime.now(UTC) - timedelta(hours=2)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda c: _grant(http, c, began), customers))
        _created(http.post("/v1/webhook-endpoints", json={"url": f"http://127.0.0.1:{receiver.port}/hook"}))
        rule = {"target_kind": "billing", "target_id": "prepay", "condition": "balance_below", "threshold": "5"}
        _created(http.post("/v1/alert-rules", json=rule))

        posted = _push(http, customers, ROUNDS[0])
        sampled = customers[:: max(1, len(customers) // args.sampled)][: args.sampled]
        after_first = GRANT - ROUNDS[0] * RESTORE_PRICE
        with ThreadPoolExecutor(8) as pool:
            lags = [lag for lag in pool.map(lambda c: _balance_lag(http, c, after_first), sampled) if lag is not None]
        first_round_s = time.time() - min(posted.values())

        crossing = _push(http, customers, ROUNDS[1])
        wait_for(lambda: len(receiver.arrived) >= len(customers), 600, "every customer's alert")
        time.sleep(5)  # any repeat would come now
        latencies = [receiver.arrived[c] - crossing[c] for c in customers if c in receiver.arrived]
        print(
            json.dumps(
                {
                    "customers": len(customers),
                    "balance_lag_p50_s": percentile(lags, 0.5),
                    "balance_lag_p99_s": percentile(lags, 0.99),
                    "balances_measured": len(lags),
                    "first_round_visible_s": round(first_round_s, 1),
                    "alert_p50_s": percentile(latencies, 0.5),
                    "alert_p99_s": percentile(latencies, 0.99),
                    "alert_max_s": percentile(latencies, 1.0),
                    "alerts": len(receiver.arrived),
                    "alert_repeats": receiver.repeats,
                }
            )
        )


def _grant(http: httpx.Client, customer: str, effective_at: datetime) -> None:
    body = {"amount": str(GRANT), "effective_at": effective_at.isoformat()}
    _created(http.post(f"/v1/credit/{customer}/grants", json=body, headers={"Idempotency-Key": "bench"}))


def _created(answer: httpx.Response) -> None:
    if answer.status_code != 201:
        raise RuntimeError(answer.text)


def _push(http: httpx.Client, customers: list[str], quantity: Decimal) -> dict[str, float]:
    """One restore per customer, in batches; when each customer's batch was posted."""
    at, posted = datetime.now(UTC), dict[str, float]()
    for start in range(0, len(customers), BATCH):
        chunk = customers[start : start + BATCH]
        events = [xaas_usage(quantity=str(quantity), customer_id=c, at=at, resource_id=f"bk-{c}") for c in chunk]
        sent = time.time()
        answer = http.post("/v1/events", content=encode_batch(events))
        if answer.status_code != 202 or answer.json()["rejected"]:
            raise RuntimeError(answer.text[:500])
        posted |= dict.fromkeys(chunk, sent)
    return posted


def _balance_lag(http: httpx.Client, customer: str, expected: Decimal) -> float | None:
    """Seconds from the usage API showing the round's usage to the balance reflecting it."""
    deadline = time.time() + 120
    while time.time() < deadline:
        shown = Decimal(http.get(f"/v1/customers/{customer}/usage").json()["totals_exact"].get("EUR", "0"))
        if shown >= ROUNDS[0] * RESTORE_PRICE:
            visible = time.time()
            while time.time() < deadline:
                balance = Decimal(http.get(f"/v1/credit/{customer}/balance").json()["balances"][0]["balance"])
                if balance <= expected:
                    return time.time() - visible
                time.sleep(0.02)
        time.sleep(0.05)
    return None


if __name__ == "__main__":
    main()
