"""Prepaid credit under load on the embedded default: 10,000 pre-pay customers burning at once.

A provider rule alerts under 5.00 to a webhook receiver here. Every customer burns 0.45 a round
(10 GB restored at 0.045), a round every ``--round-s`` seconds. A first round, in which no one
crosses, measures the balance lag while every customer burns; then customer ``i``, holding
5.20 + 0.45 x (i mod rounds) after it, crosses 5.00 in alert round ``(i mod rounds) + 1``: a
tenth of the customers cross in each of the 10 alert rounds while all of them keep burning. The
balance lag has a round of its own because its 8 polling clients weigh on the API: sharing the
first alert round, they held its alerts back by up to 1.5 s.

Prints one JSON line:
- ``balance_lag_p50_s`` / ``balance_lag_p99_s``: for sampled customers in the first round (every
  customer burning, no one crossing), from the moment the usage API shows the round's usage to
  the moment the balance reflects it;
- ``alert_p50_s`` / ``alert_p99_s``: from the POST of the batch holding the usage event that
  crosses a customer's threshold to its signed webhook received, over every customer;
- ``posted_to_fired_p99_s`` / ``fired_to_received_p99_s``: the same, cut where the pass fired
  the alert (storing the usage, waiting for and running the pass; then the outbox);
- ``alert_max_by_round_s``: the slowest alert of each alert round (the p99 is the slowest rounds');
- ``alerts``: how many customers' alerts arrived (each once: a repeat is counted apart).

Run: ``make bench-credits`` (``python bench/credits.py --help`` for sizes). Figures on the 2-core
reference machine are in the README.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.pipeline import metric_value, start_embedded  # noqa: E402
from schemas.events import encode_batch  # noqa: E402
from tests.factories import catalog_document, xaas_usage  # noqa: E402
from tests.integration.harness import free_port, wait_for  # noqa: E402

THRESHOLD = Decimal("5.00")
RESTORE_PRICE = Decimal("0.045")
RESTORED_GB = Decimal(10)
BURN = RESTORED_GB * RESTORE_PRICE
"""What each customer burns a round: 0.45."""
BATCH = 1000


def granted(index: int, rounds: int) -> Decimal:
    """5.20 + 0.45 x (index mod rounds): above 5.00 until round (index mod rounds) + 1."""
    return THRESHOLD + Decimal("0.20") + BURN * (index % rounds)


def by_round(values: dict[str, float], customers: list[str], rounds: int) -> list[float]:
    """The largest of ``values`` among the customers crossing in each alert round."""
    return [
        percentile([values[c] for n, c in enumerate(customers) if n % rounds == number and c in values], 1.0)
        for number in range(rounds)
    ]


class Receiver:
    """A webhook receiver in a process of its own, as a real one would not share the bench's
    interpreter (its pushes and polls would hold the receiver's arrivals back). It records when
    each alert's message first arrived; a repeat is counted, not recorded. ``GET /arrivals``
    gives what it recorded."""

    def __init__(self) -> None:
        self.port = free_port()
        multiprocessing.Process(target=_receive, args=(self.port,), daemon=True).start()
        wait_for(lambda: self.count() >= 0, 30, "the webhook receiver")

    def count(self) -> int:
        try:
            return int(httpx.get(f"http://127.0.0.1:{self.port}/count", timeout=5).text)
        except httpx.TransportError:
            return -1

    def arrivals(self) -> dict[str, Any]:
        answer: dict[str, Any] = httpx.get(f"http://127.0.0.1:{self.port}/arrivals", timeout=30).json()
        return answer


def _receive(port: int) -> None:
    arrived: dict[str, float] = {}
    fired: dict[str, float] = {}
    repeats = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal repeats
        body = json.loads(await request.read())
        if body["customer_id"] in arrived:  # one event loop: no lock needed
            repeats += 1
        else:
            arrived[body["customer_id"]] = time.time()
            fired[body["customer_id"]] = datetime.fromisoformat(body["fired_at"]).timestamp()
        return web.Response(status=204)

    async def count(_: web.Request) -> web.Response:
        return web.Response(text=str(len(arrived)))

    async def arrivals(_: web.Request) -> web.Response:
        return web.json_response({"arrived": arrived, "fired": fired, "repeats": repeats})

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/count", count)
    app.router.add_get("/arrivals", arrivals)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


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
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--round-s", type=float, default=3.0, help="seconds from one round's start to the next")
    args = parser.parse_args()
    customers = [f"c-{n:05d}" for n in range(args.customers)]
    receiver = Receiver()
    path = Path(f"/tmp/bench-credits-catalog-{receiver.port}.yaml")
    path.write_text(yaml.safe_dump(catalog(customers)))
    environment = {
        "METERLINE_CATALOG": str(path),
        "METERLINE_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1:*",
        "METERLINE_RATE_LIMIT_PER_S": "1000000",
        "METERLINE_RATE_LIMIT_BURST": "1000000",
        "METERLINE_INGEST_RATE_LIMIT_PER_S": "1000000",
        "METERLINE_INGEST_RATE_LIMIT_BURST": "1000000",
    }
    with start_embedded("meterline-bench-credits-", 2, **environment) as system:
        headers = {"Authorization": f"Bearer {system.admin_key}", "Content-Type": "application/json"}
        http = httpx.Client(base_url=system.url, timeout=60, headers=headers)
        began = datetime.now(UTC) - timedelta(hours=2)
        with ThreadPoolExecutor(8) as pool:
            # one burn more than the alert rounds need: the balance lag's round
            amounts = [granted(n, args.rounds) + BURN for n in range(len(customers))]
            list(pool.map(lambda n: _grant(http, customers[n], amounts[n], began), range(len(customers))))
        _created(http.post("/v1/webhook-endpoints", json={"url": f"http://127.0.0.1:{receiver.port}/hook"}))
        rule = {"target_kind": "billing", "target_id": "prepay", "condition": "balance_below", "threshold": "5"}
        _created(http.post("/v1/alert-rules", json=rule))

        sampled = customers[:: max(1, len(customers) // args.sampled)][: args.sampled]
        expected = {c: granted(n, args.rounds) for n, c in enumerate(customers)}
        started = time.time()
        _push(http, customers)
        with ThreadPoolExecutor(8) as pool:  # the balance lag, while every customer burns
            lags = [lag for lag in pool.map(lambda c: _balance_lag(http, c, expected[c]), sampled) if lag is not None]
        time.sleep(max(0.0, started + args.round_s - time.time()))

        crossing: dict[str, float] = {}
        for number in range(1, args.rounds + 1):
            started = time.time()
            posted = _push(http, customers)
            crossing |= {c: posted[c] for n, c in enumerate(customers) if n % args.rounds + 1 == number}
            time.sleep(max(0.0, started + args.round_s - time.time()))
        wait_for(lambda: receiver.count() >= len(customers), 600, "every customer's alert")
        time.sleep(5)  # any repeat would come now
        received = receiver.arrivals()
        arrived, fired = received["arrived"], received["fired"]
        latencies = [arrived[c] - crossing[c] for c in customers if c in arrived]
        to_fired = [fired[c] - crossing[c] for c in customers if c in fired]
        to_sent = [arrived[c] - fired[c] for c in customers if c in fired]
        print(
            json.dumps(
                {
                    "customers": len(customers),
                    "balance_lag_p50_s": percentile(lags, 0.5),
                    "balance_lag_p99_s": percentile(lags, 0.99),
                    "balances_measured": len(lags),
                    "alert_p50_s": percentile(latencies, 0.5),
                    "alert_p99_s": percentile(latencies, 0.99),
                    "alert_max_s": percentile(latencies, 1.0),
                    "posted_to_fired_p99_s": percentile(to_fired, 0.99),
                    "fired_to_received_p99_s": percentile(to_sent, 0.99),
                    "alert_max_by_round_s": by_round(
                        {c: arrived[c] - crossing[c] for c in arrived}, customers, args.rounds
                    ),
                    "alerts": len(arrived),
                    "alert_repeats": received["repeats"],
                    "credit_passes": int(metric_value(system.url, "meterline_credit_pass_seconds_count")),
                    "credit_pass_mean_s": round(
                        metric_value(system.url, "meterline_credit_pass_seconds_sum")
                        / max(1.0, metric_value(system.url, "meterline_credit_pass_seconds_count")),
                        3,
                    ),
                }
            )
        )


def _grant(http: httpx.Client, customer: str, amount: Decimal, effective_at: datetime) -> None:
    body = {"amount": str(amount), "effective_at": effective_at.isoformat()}
    _created(http.post(f"/v1/credit/{customer}/grants", json=body, headers={"Idempotency-Key": "bench"}))


def _created(answer: httpx.Response) -> None:
    if answer.status_code != 201:
        raise RuntimeError(answer.text)


def _push(http: httpx.Client, customers: list[str]) -> dict[str, float]:
    """One restore per customer, in batches; when each customer's batch was posted."""
    at, posted = datetime.now(UTC), dict[str, float]()
    for start in range(0, len(customers), BATCH):
        chunk = customers[start : start + BATCH]
        events = [xaas_usage(quantity=str(RESTORED_GB), customer_id=c, at=at, resource_id=f"bk-{c}") for c in chunk]
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
        if shown >= BURN:
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
