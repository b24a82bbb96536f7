"""One credit pass, timed alone: the engine in process (chDB), no broker, no API, nothing else
on the machine. ``make bench-credits`` measures the pass inside the whole system, where it
shares two cores with everything; this says what the pass itself costs, to tell the two apart.

``--customers`` pre-pay customers hold credit (as in ``bench/credits.py``) under one provider
rule. Each round stores a 10 GB restore per customer (its hour-long interval reaches into the
hour before, so every round burns a settled hour and the hour under way), then runs a pass.

``--history-days`` days of usage stored long before (an hour-long backup per customer and hour,
written straight into the hourly rollup) stand for the months a pass looks back over for late
usage: a pass must not read them again each time.

Prints one JSON line: the first pass (every holder), an idle pass, each round's pass, and the
pass after each round (nothing moved), in seconds.

Run: ``make bench-credit-pass`` (``python bench/credit_pass.py --help`` for sizes).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import clickhouse_connect
from clickhouse_connect.driver.client import Client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.credit_accounts import CreditAccounts, GrantRequest  # noqa: E402
from api.credit_watch import CreditWatch  # noqa: E402
from api.partner_credit import PartnerCredit  # noqa: E402
from bench.credits import catalog, granted  # noqa: E402
from billing.catalog import Catalog  # noqa: E402
from billing.credits import EntryKind  # noqa: E402
from billing.pricing import price_book  # noqa: E402
from storage.alert_store import AlertStore, RuleRow  # noqa: E402
from storage.billed_usage import PeriodUsage  # noqa: E402
from storage.connection import ClientPool  # noqa: E402
from storage.credit_store import CreditStore  # noqa: E402
from storage.dashboards import Dashboards  # noqa: E402
from storage.schema import migrate  # noqa: E402
from storage.usage_store import UsageStore  # noqa: E402
from tests.factories import xaas_usage  # noqa: E402
from tests.integration.test_identities import frame  # noqa: E402

DATABASE = "meterline"
NOW = datetime(2026, 11, 10, 12, 30, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--history-days", type=int, default=0)
    args = parser.parse_args()
    engine = clickhouse_connect.get_client(dsn=f"chdb://{tempfile.mkdtemp(prefix='meterline-credit-pass-')}")
    migrate(engine, DATABASE)
    store_history(engine, args.customers, args.history_days)
    customers = [f"c-{n:05d}" for n in range(args.customers)]
    the_catalog = Catalog.model_validate(catalog(customers))
    accounts = CreditAccounts(CreditStore(engine, DATABASE), late_usage_months=3)
    alerts = AlertStore(engine, DATABASE)
    partners = PartnerCredit(accounts, CreditStore(engine, DATABASE), PeriodUsage(engine, DATABASE))
    dashboards = Dashboards(ClientPool(lambda: engine, 1), DATABASE)
    watch = CreditWatch(accounts, alerts, dashboards, lambda: the_catalog, partners)
    for n, customer in enumerate(customers):
        amount = granted(n, 10)
        request = GrantRequest(
            customer, "EUR", amount, NOW - timedelta(hours=2), None, 0, frozenset(), False, None, "bench", "bench"
        )
        accounts.grant(request, EntryKind.GRANT, "bench", NOW)
    alerts.save([RuleRow("r-1", "acme", "billing", "prepay", "balance_below", Decimal(5), False, "bench", NOW)])
    clock = iter(NOW + timedelta(seconds=second) for second in range(1, 10_000))

    def timed_pass() -> float:
        started = time.perf_counter()
        watch.run_pass(next(clock))
        return round(time.perf_counter() - started, 3)

    first = timed_pass()
    figures = {"customers": args.customers, "first_pass_s": first, "idle_pass_s": timed_pass()}
    rounds, after = [], []
    book = price_book(the_catalog)
    for number in range(args.rounds):
        at = NOW + timedelta(seconds=number)
        events = [xaas_usage(quantity="10", customer_id=c, at=at, resource_id=f"bk-{c}") for c in customers]
        UsageStore(engine, DATABASE).write(frame(events, book), next(clock))
        rounds.append(timed_pass())
        after.append(timed_pass())
    figures |= {"history_days": args.history_days, "round_pass_s": rounds, "pass_after_round_s": after}
    print(json.dumps(figures))


def store_history(engine: Client, customers: int, days: int) -> None:
    """Each customer's backup of every hour of the ``days`` days before the day before ``NOW``,
    each hour stored when it ended, as the engine's hourly rollup holds them."""
    if not days:
        return
    engine.command(
        f"INSERT INTO {DATABASE}.usage_hours (customer_id, hour, resource_id, product, meter, dimension, unit, "
        "currency, base_divisor, event_hour, base_sum, base_max, latest, amount, amount_base, rated_rows, "
        "stored_until) "
        "SELECT customer_id, hour, concat('bk-', customer_id), 'backup', 'backup_gb_hours', '', 'GB-h', 'EUR', 1, "
        "hour, 10, 10, (hour, 10), 0.5, 0.5, 1, hour + INTERVAL 1 HOUR "
        "FROM (SELECT concat('c-', leftPad(toString(number % {customers:UInt32}), 5, '0')) AS customer_id, "
        "toStartOfDay({now:DateTime('UTC')}) - INTERVAL 1 DAY - toIntervalHour(intDiv(number, {customers:UInt32}) + 1) "
        "AS hour FROM numbers({rows:UInt64}))",
        parameters={"customers": customers, "now": NOW, "rows": customers * days * 24},
    )


if __name__ == "__main__":
    main()
