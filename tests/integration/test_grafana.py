"""The provisioned Grafana dashboards: valid dashboards, and every panel's query right.

Each ClickHouse panel query is expanded as the ClickHouse data source expands its macros for a
time range, run against the real engine over usage stored through the sink's own code (the
last day and a half, so that "today" and "this month" hold some), and compared with figures
recounted here from the raw events. Prometheus panels may only name metrics meterline exports.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard
from prometheus_client import REGISTRY

import api.metrics  # noqa: F401 - registers the API's metrics
import pipeline.metrics  # noqa: F401
import sinks.metrics  # noqa: F401
from agents.simulated import FleetSpec, SimulatedFleet
from billing.adapters.catalog_file import load_catalog
from billing.pricing import price_book
from pipeline.dedup import RecentEvents
from pipeline.processing import process_batch
from schemas.clickhouse import migrate
from schemas.events import encode_batch
from schemas.records import USAGE_EVENT_SCHEMA, decode_frame, encode_frame
from sinks.clickhouse import UsageStore

pytestmark = pytest.mark.integration

GRAFANA = Path("grafana")
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
DB = "meterline"
BOOK = price_book(load_catalog(Path("billing/catalog.yaml")))
FLEET = SimulatedFleet(FleetSpec(seed=8, customers=4, hypervisors=2, vms_per_hypervisor=3, vdcs=2, xaas_items=4))
NOW = datetime.now(UTC)
INTERVAL_S = 3600


def expand(sql: str, start: datetime, end: datetime, interval_s: int, variables: dict[str, str]) -> str:
    """The ClickHouse data source's macros and Grafana's variables, as they are expanded for a
    panel's range and interval."""
    frm, to = int(start.timestamp()), int(end.timestamp())
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", rf"\1 >= toDateTime({frm}) AND \1 <= toDateTime({to})", sql)
    sql = re.sub(
        r"\$__timeInterval\(([^)]+)\)", rf"toStartOfInterval(toDateTime(\1), INTERVAL {interval_s} second)", sql
    )
    sql = sql.replace("$__fromTime", f"toDateTime({frm})").replace("$__toTime", f"toDateTime({to})")
    sql = sql.replace("$__interval_s", str(interval_s))
    for name, value in variables.items():
        sql = sql.replace("${" + name + "}", value).replace("$" + name, value)
    assert "$" not in sql, f"a macro or variable left unexpanded: {sql}"
    return sql


def panels() -> list[tuple[str, dict[str, Any]]]:
    return [(path.stem, panel) for path in DASHBOARDS for panel in json.loads(path.read_text())["panels"]]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path_factory.mktemp('grafana')}")
    migrate(client, DB)
    store = UsageStore(client, DB)
    last = NOW.replace(minute=0, second=0, microsecond=0)
    ticks = [last - timedelta(minutes=5 * n) for n in range(36 * 12)]
    for n in range(0, len(ticks), 48):
        events = [e for at in ticks[n : n + 48] for batch in FLEET.collect(at).values() for e in batch]
        outcome = process_batch([encode_batch(events)], RecentEvents(), BOOK)
        store.write(decode_frame(encode_frame(outcome.events, USAGE_EVENT_SCHEMA)), NOW)
    yield client
    client.close()


def test_dashboards_load_as_grafana_dashboards_and_keep_every_field():
    """Loaded by Grafana's own dashboard model (grafana-foundation-sdk), nothing is dropped: every
    field and panel option written is one Grafana knows."""
    register_default_plugins()
    assert DASHBOARDS
    for path in DASHBOARDS:
        written = json.loads(path.read_text())
        loaded = json.loads(json.dumps(Dashboard.from_json(written), cls=JSONEncoder))
        _assert_kept(written, loaded, path.name)
        ids = [panel["id"] for panel in written["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"


def _assert_kept(written: Any, loaded: Any, where: str) -> None:
    if isinstance(written, dict):
        assert isinstance(loaded, dict), where
        for key, value in written.items():
            if value in (None, {}, [], ""):
                continue
            assert key in loaded, f"{where}.{key} is not a field Grafana's model knows"
            _assert_kept(value, loaded[key], f"{where}.{key}")
    elif isinstance(written, list):
        assert isinstance(loaded, list) and len(loaded) == len(written), where
        for n, (a, b) in enumerate(zip(written, loaded, strict=True)):
            _assert_kept(a, b, f"{where}[{n}]")


def test_every_data_source_a_panel_names_is_provisioned():
    provisioned = yaml.safe_load((GRAFANA / "provisioning/datasources/meterline.yaml").read_text())["datasources"]
    uids = {source["uid"]: source["type"] for source in provisioned}
    for dashboard, panel in panels():
        for target in panel["targets"]:
            source = target["datasource"]
            assert uids.get(source["uid"]) == source["type"], f"{dashboard}: {panel['title']}"


def test_prometheus_panels_name_only_metrics_meterline_exports():
    exported = {metric.name for metric in REGISTRY.collect()}
    exported |= {f"{name}_total" for name in exported} | {f"{name}_bucket" for name in exported}
    for dashboard, panel in panels():
        for target in panel["targets"]:
            for metric in re.findall(r"\bmeterline_[a-z_]+", target.get("expr", "")):
                assert metric in exported, f"{dashboard}: {panel['title']} reads {metric}, which is not exported"


def recount(client: Any, select: str, where: str, group: str = "", order: str = "") -> list[tuple[Any, ...]]:
    """The same figures from the raw events, each once (``rated_usage``)."""
    query = f"SELECT {select} FROM {DB}.rated_usage WHERE {where} {group} {order}"
    return [tuple(row) for row in client.query(query).result_rows]


MONTH = "toDateTime(toStartOfMonth(now('UTC')), 'UTC')"


def forecast(client: Any, customer: str | None) -> Decimal:
    """This month so far plus the last 168 complete hours' hourly rate until the month's end."""
    whose = f"customer_id = '{customer}' AND " if customer else ""
    [(so_far,)] = recount(client, "sum(amount)", f"{whose}usage_start >= {MONTH}")
    this_hour = NOW.replace(minute=0, second=0, microsecond=0)
    [(week,)] = recount(
        client,
        "sum(amount)",
        f"{whose}usage_start >= toDateTime({int((this_hour - timedelta(hours=168)).timestamp())}) "
        f"AND usage_start < toDateTime({int(this_hour.timestamp())})",
    )
    month_start = NOW.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    month_end = (month_start + timedelta(days=32)).replace(day=1)
    return so_far, week, month_start, month_end  # type: ignore[return-value]


def expected(client: Any, dashboard: str, title: str, start: datetime, end: datetime, customer: str) -> Any:
    """What each panel must show, worked out from the raw events."""
    frm, to = int(start.timestamp()), int(end.timestamp())
    in_range = f"toStartOfHour(usage_start) >= toDateTime({frm}) AND toStartOfHour(usage_start) <= toDateTime({to})"
    bucket = f"toStartOfInterval(toStartOfHour(usage_start), INTERVAL {INTERVAL_S} second)"
    whose = f"customer_id = '{customer}'" if dashboard == "customer-usage" else "1"
    today = "usage_start >= toStartOfDay(now('UTC')) AND usage_start < toStartOfDay(now('UTC')) + INTERVAL 1 DAY"
    figures = {
        "Revenue today": lambda: recount(client, "sum(amount)", today),
        "Revenue this month": lambda: recount(client, "sum(amount)", f"usage_start >= {MONTH}"),
        "Top customers this month": lambda: recount(
            client,
            "customer_id, sum(amount) AS cost",
            f"usage_start >= {MONTH}",
            "GROUP BY customer_id",
            "ORDER BY cost DESC LIMIT 10",
        ),
        "Top products this month": lambda: recount(
            client,
            "product, sum(amount) AS cost",
            f"usage_start >= {MONTH}",
            "GROUP BY product",
            "ORDER BY cost DESC LIMIT 10",
        ),
        "Cost over time by product": lambda: recount(
            client,
            f"{bucket} AS time, product, sum(amount)",
            in_range,
            "GROUP BY time, product",
            "ORDER BY time, product",
        ),
        "Cost in the time range": lambda: recount(client, "sum(amount)", f"{whose} AND {in_range}"),
        "This month so far": lambda: recount(client, "sum(amount)", f"{whose} AND usage_start >= {MONTH}"),
        "Cost over time by meter": lambda: recount(
            client,
            f"{bucket} AS time, meter, sum(amount)",
            f"{whose} AND {in_range}",
            "GROUP BY time, meter",
            "ORDER BY time, meter",
        ),
        "Resources by cost in the time range": lambda: recount(
            client,
            "resource_id, product, sum(amount) AS cost",
            f"{whose} AND {in_range}",
            "GROUP BY resource_id, product",
            "ORDER BY cost DESC, resource_id LIMIT 50",
        ),
    }
    return figures[title]()


CLICKHOUSE_PANELS = [
    (dashboard, panel)
    for dashboard, panel in panels()
    if panel["targets"][0]["datasource"]["type"] == "grafana-clickhouse-datasource"
]


@pytest.mark.parametrize(("dashboard", "panel"), CLICKHOUSE_PANELS, ids=[p["title"] for _, p in CLICKHOUSE_PANELS])
def test_every_clickhouse_panel_shows_what_the_raw_events_add_up_to(client, dashboard, panel):
    start, end = NOW - timedelta(days=7), NOW
    customer = sorted({vm.customer_id for vm in FLEET.vms})[0]
    sql = expand(panel["targets"][0]["rawSql"], start, end, INTERVAL_S, {"customer": customer})
    asked = datetime.now(UTC)
    got = [tuple(row) for row in client.query(sql).result_rows]
    answered = datetime.now(UTC)
    assert got, f"{panel['title']} shows nothing over the stored usage"
    title = panel["title"]
    if title == "Month forecast":  # the run rate runs on while the query does: bounded by both ends
        so_far, week, _, month_end = forecast(client, customer if dashboard == "customer-usage" else None)
        [(shown,)] = got

        def at(moment: datetime) -> Fraction:
            seconds_left = Fraction(int((month_end - moment.replace(microsecond=0)).total_seconds()))  # now(): seconds
            return Fraction(so_far) + Fraction(week) / 168 * seconds_left / 3600

        assert at(answered) - Fraction(1, 10**9) <= Fraction(shown) <= at(asked) + Fraction(1, 10**9), title
        return
    if title == "Usage over time":
        assert all(quantity > 0 for _, _, quantity in got)
        return
    want = expected(client, dashboard, title, start, end, customer)
    if title == "Resources by cost in the time range":  # ties in cost may come in any order
        assert sorted(got) == sorted(want)
    elif title in ("Cost over time by product", "Cost over time by meter"):
        assert sorted((t.replace(tzinfo=None), k, a) for t, k, a in got) == sorted(
            (t.replace(tzinfo=None), k, a) for t, k, a in want
        )
    else:
        assert got == want, title


def test_the_customer_variable_lists_the_customers_with_usage(client):
    board = json.loads((GRAFANA / "dashboards/customer-usage.json").read_text())
    [variable] = board["templating"]["list"]
    listed = [row[0] for row in client.query(variable["query"]).result_rows]
    assert listed == sorted({vm.customer_id for vm in FLEET.vms} | {v["customer_id"] for v in FLEET.vdcs + FLEET.xaas})
