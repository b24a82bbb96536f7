"""The provisioned Grafana dashboards: valid dashboards, and every panel's figures right.

Every panel that is not Prometheus reads meterline's REST API through Grafana's Infinity data
source. Each is run here as Grafana and Infinity run it: its variables and macros expanded for a
concrete time range (and customer), its request sent to a running meterline with the key the
data source holds, the answer framed by its root selector, typed columns and filter, then its
transformations and the reduction the panel shows. The figures are compared with a recount, by
hand, of the usage the test sent. Prometheus panels may only name metrics meterline exports.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard
from prometheus_client import REGISTRY

import api.metrics  # noqa: F401 - registers the API's metrics
import pipeline.metrics  # noqa: F401
import sinks.metrics  # noqa: F401
from agents.cloudevents import usage_event
from billing.periods import bucket_ends
from meterline.brokers import Broker
from schemas.events import Event, EventType, encode_batch
from tests.factories import catalog_document, vm_sample
from tests.integration.harness import System, system_with_catalog, wait_for

pytestmark = pytest.mark.integration

GRAFANA = Path("grafana")
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
INFINITY = "yesoreyeram-infinity-datasource"
HOUR = timedelta(hours=1)
UNITS = {"h": "hours", "d": "days"}

VM = {
    "interval_s": 3600,
    "vcpu": 2,
    "ram_mb": 4096,
    "disks": [{"device": "vda", "tier": "ssd", "size_gib": 40}],
    "net_rx_bytes": 0,
    "net_tx_bytes": 2_000_000_000,
}
VM_HOUR = {
    "vcpu_hours": ("", "vCPU-hour", "2", "0.05"),
    "ram_gib_hours": ("", "GiB-hour", "4", "0.016"),
    "disk_gib_hours": ("ssd", "GiB-hour", "40", "0.008"),
    "net_tx_gb": ("", "GB", "2", "0.02"),
}
"""One hour of ``VM`` at the test catalog's prices (meter: dimension, unit, quantity, amount):
2 vCPU-hours x 0.025 = 0.05, 4 GiB-hours of RAM x 0.004 = 0.016, 40 GiB-hours of ssd x 0.0002
= 0.008, 2 GB sent x 0.01 (the first tier) = 0.02: 0.094. Nothing received, nothing billed."""
RESOLD_VCPU = ("", "vCPU-hour", "2", "0.06")
"""The resold customer's vCPU at its partner north's price: 2 x 0.03."""
RESTORE = ("xaas_units", "restore_gb", "GB", "12.5", "0.5625")
"""A backup restore of 12.5 GB, a counter: 12.5 x 0.045."""
VM_HOURS_AGO = {
    ("direct", "vm-a"): (1, 2, 3, 26, 100, 200),
    ("direct", "vm-b"): (1, 3, 50),
    ("resold", "vm-r"): (1, 5, 26, 180),
}
"""Each VM's hours of usage, counted back from the start of the current hour."""
INGEST_WINDOW = timedelta(minutes=5)
CENT = Decimal("0.01")
RUN_RATE_HOURS = 168


@dataclass(frozen=True)
class Usage:
    """What one event adds to one meter, as the recount sees it."""

    customer: str
    resource: str
    product: str
    start: datetime
    meter: str
    dimension: str
    unit: str
    quantity: Decimal
    amount: Decimal


CREDIT = {"direct": Decimal("1.00"), "resold": Decimal("5.00")}
"""Prepaid credit granted 40 days before the usage is sent: direct uses more than it holds."""


@dataclass(frozen=True)
class Sent:
    """A meterline that stored the usage sent, a reader key, and when it was sent and seen stored."""

    system: System
    reader: str
    usage: list[Usage]
    events: int
    sent_at: datetime
    stored_by: datetime


def sent_usage(now: datetime) -> tuple[list[Event], list[Usage]]:
    """Fifteen events: thirteen VM-hours of two customers, a restore two hours back and one that
    ends now (so that today holds some whatever the hour), and what each adds up to."""
    this_hour = now.replace(minute=0, second=0, microsecond=0)
    events: list[Event] = []
    usage: list[Usage] = []
    for (customer, resource), hours in VM_HOURS_AGO.items():
        for hours_ago in hours:
            start = this_hour - hours_ago * HOUR
            events.append(vm_sample(resource, customer, at=start + HOUR, **VM))
            for meter, (dimension, unit, quantity, amount) in VM_HOUR.items():
                if customer == "resold" and meter == "vcpu_hours":
                    dimension, unit, quantity, amount = RESOLD_VCPU
                usage.append(
                    Usage(customer, resource, "vm", start, meter, dimension, unit, Decimal(quantity), Decimal(amount))
                )
    meter, sku, unit, quantity, amount = RESTORE
    just_now = now.replace(microsecond=0)
    for start, end in ((this_hour - 2 * HOUR, this_hour - HOUR), (just_now - timedelta(seconds=1), just_now)):
        interval_s = int((end - start).total_seconds())
        data = {"customer_id": "direct", "resource_id": "bk-1", "interval_s": interval_s, "sku": sku}
        events.append(
            usage_event(EventType.XAAS_USAGE, "test://xaas", end, {**data, "quantity": quantity, "unit": unit})
        )
        usage.append(Usage("direct", "bk-1", sku, start, meter, sku, unit, Decimal(quantity), Decimal(amount)))
    return events, usage


@pytest.fixture(scope="module")
def sent(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sent]:
    """A running meterline on the test catalog that has stored ``sent_usage``, and a reader key."""
    system = system_with_catalog(broker, tmp_path_factory.mktemp("grafana"), catalog_document())
    try:
        system.start_all()
        sent_at = datetime.now(UTC)
        events, usage = sent_usage(sent_at)
        answer = system.http.post("/v1/events", content=encode_batch(events), timeout=30)
        assert answer.status_code == 202 and not answer.json()["rejected"], answer.text
        wait_for(
            lambda: system.metric('meterline_sink_rows_written_total{table="usage_events"}') >= len(events),
            what="the events to be stored",
        )
        wait_for(lambda: system.http.get("/v1/ingest").json()["last_stored"], what="the message to be recorded")
        for customer, amount in CREDIT.items():
            granted = system.http.post(
                f"/v1/credit/{customer}/grants",
                json={"amount": str(amount), "effective_at": (sent_at - timedelta(days=40)).isoformat()},
                headers={"Idempotency-Key": "grafana"},
            )
            assert granted.status_code == 201, granted.text
        wait_for(
            lambda: system.http.get("/v1/credit/direct/balance").json()["balances"][0]["balance"] == "0.00",
            what="the credit to be settled with the usage stored before it was granted",
        )
        reader = system.http.post("/v1/keys", json={"name": "grafana", "role": "reader"}).json()["key"]
        yield Sent(system, reader, usage, len(events), sent_at, datetime.now(UTC))
    finally:
        system.stop_all()


def boards() -> list[tuple[str, dict[str, Any]]]:
    return [(path.stem, json.loads(path.read_text())) for path in DASHBOARDS]


def panels() -> list[tuple[str, dict[str, Any]]]:
    return [(name, panel) for name, board in boards() for panel in board["panels"]]


def api_targets() -> list[dict[str, Any]]:
    """The queries of the API: panels' and the variable's (which names its data source above it)."""
    found = [target for _, panel in panels() for target in panel["targets"] if target["datasource"]["type"] == INFINITY]
    for _, board in boards():
        found += [v["query"]["infinityQuery"] for v in board["templating"]["list"] if v["type"] == "query"]
    return found


API_PANELS = [(name, panel) for name, panel in panels() if panel["datasource"]["type"] == INFINITY]


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


def provisioned() -> dict[str, dict[str, Any]]:
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/meterline.yaml").read_text())["datasources"]
    return {source["uid"]: source for source in sources}


def test_every_data_source_a_panel_or_variable_names_is_provisioned():
    uids = {uid: source["type"] for uid, source in provisioned().items()}
    for dashboard, board in boards():
        named = [target["datasource"] for panel in board["panels"] for target in panel["targets"]]
        named += [panel["datasource"] for panel in board["panels"]]
        named += [variable["datasource"] for variable in board["templating"]["list"]]
        for source in named:
            assert uids.get(source["uid"]) == source["type"], f"{dashboard}: {source}"


def test_the_api_data_source_sends_its_key_to_the_api_only():
    """The key comes from Grafana's environment, goes in the Authorization header (kept
    encrypted), and only to the API's URL: every query names a path under it, no host."""
    source = provisioned()["meterline-api"]
    assert source["type"] == INFINITY and source["url"] == "${METERLINE_API_URL}"
    settings, secrets = source["jsonData"], source["secureJsonData"]
    assert settings["allowedHosts"] == ["${METERLINE_API_URL}"]
    assert settings["httpHeaderName1"] == "Authorization"
    assert secrets == {"httpHeaderValue1": "Bearer ${METERLINE_API_KEY}"}
    assert not {"auth_method", "basicAuth", "oauthPassThru", "httpHeaderName2"} & (set(settings) | set(source))
    for target in api_targets():
        assert target["source"] == "url" and re.fullmatch(r"/v1/[a-z/${}:_-]+", target["url"]), target["url"]


def test_every_api_query_is_json_with_the_backend_parser_a_plain_root_and_typed_columns():
    """The backend parser runs in Grafana's server (alerts and shared dashboards work); a root
    that is a plain path reads the same in gjson and JSONata, which the parser tries in turn."""
    for target in api_targets():
        assert (target["type"], target["parser"], target["url_options"]["method"]) == ("json", "backend", "GET")
        assert re.fullmatch(r"([a-z_]+(\.[a-z_]+)*)?", target["root_selector"]), target["root_selector"]
        assert target["columns"] and all(c["type"] in ("string", "number", "timestamp") for c in target["columns"])


def test_prometheus_panels_name_only_metrics_meterline_exports():
    exported = {metric.name for metric in REGISTRY.collect()}
    exported |= {f"{name}_total" for name in exported} | {f"{name}_bucket" for name in exported}
    for dashboard, panel in panels():
        for target in panel["targets"]:
            for metric in re.findall(r"\bmeterline_[a-z_]+", target.get("expr", "")):
                assert metric in exported, f"{dashboard}: {panel['title']} reads {metric}, which is not exported"


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime


def relative(expression: str, now: datetime) -> datetime:
    """Grafana's ``now``, ``now-7d``, ``now/d`` (start of the day, UTC dashboards) or ``now/M``."""
    if expression == "now/d":
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    if expression == "now/M":
        return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    found = re.fullmatch(r"now(?:-(\d+)([hd]))?", expression)
    assert found, expression
    amount, unit = found.groups()
    return now - timedelta(**{"hours" if unit == "h" else "days": int(amount)}) if amount else now


def panel_range(board: dict[str, Any], panel: dict[str, Any], now: datetime) -> TimeRange:
    """The range a panel queries: the dashboard's, or the panel's relative time override."""
    return TimeRange(relative(panel.get("timeFrom") or board["time"]["from"], now), relative(board["time"]["to"], now))


def iso(at: datetime) -> str:
    """As Infinity's ``${__timeFrom:date:iso}``: UTC, milliseconds without their trailing zeros."""
    millis = f".{at.microsecond // 1000:03d}".rstrip("0").rstrip(".")
    return f"{at:%Y-%m-%dT%H:%M:%S}{millis}Z"


def custom_interval(arguments: list[str], span: TimeRange) -> str:
    """Infinity's ``$__customInterval(d1,v1,d2,v2,...,default)``: the value of the first duration
    the range does not exceed."""
    *pairs, default = arguments
    for duration, value in zip(pairs[::2], pairs[1::2], strict=True):
        if span.end - span.start <= timedelta(**{UNITS[duration[-1]]: int(duration[:-1])}):
            return value
    return default


def expand(text: str, span: TimeRange, variables: dict[str, str]) -> str:
    """A query field as Grafana (dashboard variables) and Infinity (its macros) expand it."""
    text = text.replace("${__timeFrom:date:iso}", iso(span.start)).replace("${__timeTo:date:iso}", iso(span.end))
    text = re.sub(r"\$__customInterval\(([^)]*)\)", lambda m: custom_interval(m.group(1).split(","), span), text)
    for name, value in variables.items():
        text = text.replace("${" + name + ":percentencode}", quote(value, safe="")).replace("${" + name + "}", value)
    assert "$" not in text, f"a macro or variable left unexpanded: {text}"
    return text


def request(system: System, key: str, target: dict[str, Any], span: TimeRange, variables: dict[str, str]) -> Any:
    """The API's answer to a target's request, sent as Infinity sends it."""
    params = tuple(
        (str(p["key"]), expand(p["value"], span, variables)) for p in target["url_options"].get("params", [])
    )
    answer = system.client(key).get(expand(target["url"], span, variables), params=params)
    assert answer.status_code == 200, (target["url"], params, answer.text)
    return answer.json()


def framed(body: Any, target: dict[str, Any], span: TimeRange, variables: dict[str, str]) -> list[dict[str, Any]]:
    """The backend parser's frame: the root's items, a field per column (amounts, decimal
    strings, are exact here; Grafana holds them as float64, to show them), then the filter."""
    found = body
    for key in filter(None, target["root_selector"].split(".")):
        found = found[key]
    items = found if isinstance(found, list) else [found]
    columns = target["columns"]
    rows = [{c["text"] or c["selector"]: _typed(item.get(c["selector"]), c["type"]) for c in columns} for item in items]
    expression = target.get("filterExpression")
    return [row for row in rows if _passes(row, expand(expression, span, variables))] if expression else rows


def _typed(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "number":
        return Decimal(str(value))
    if kind == "timestamp":
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return str(value)


def _passes(row: dict[str, Any], expression: str) -> bool:
    """The two filter expressions the dashboards use (govaluate): ``a == 'x'``, ``!(a IN ('x', 'y'))``."""
    if equal := re.fullmatch(r"(\w+) == '([^']*)'", expression):
        return bool(row[equal[1]] == equal[2])
    if not_in := re.fullmatch(r"!\((\w+) IN \(([^)]*)\)\)", expression):
        return row[not_in[1]] not in re.findall(r"'([^']*)'", not_in[2])
    raise AssertionError(f"a filter expression the test does not read: {expression}")


def transformed(rows: list[dict[str, Any]], transformations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Grafana's groupBy, sortBy, limit and organize (rename), as the table panel uses them."""
    for step in transformations:
        options = step["options"]
        if step["id"] == "groupBy":
            keys = [name for name, field in options["fields"].items() if field["operation"] == "groupby"]
            added = [name for name, field in options["fields"].items() if field["operation"] == "aggregate"]
            assert all(options["fields"][name]["aggregations"] == ["sum"] for name in added)
            groups: dict[tuple[Any, ...], dict[str, Any]] = {}
            for row in rows:
                group = groups.setdefault(tuple(row[k] for k in keys), {k: row[k] for k in keys})
                for name in added:
                    group[f"{name} (sum)"] = group.get(f"{name} (sum)", Decimal(0)) + row[name]
            rows = list(groups.values())
        elif step["id"] == "sortBy":
            [order] = options["sort"]
            rows = sorted(rows, key=lambda row: row[order["field"]], reverse=order.get("desc", False))
        elif step["id"] == "limit":
            rows = rows[: options["limitField"]]
        elif step["id"] == "organize":
            rows = [{options["renameByName"].get(k, k): v for k, v in row.items()} for row in rows]
        else:
            raise AssertionError(f"a transformation the test does not apply: {step['id']}")
    return rows


def shown(panel: dict[str, Any], rows: list[dict[str, Any]], columns: list[dict[str, Any]]) -> Any:
    """What the panel shows of its frame: a stat's sum, a bar per row, a series per label set."""
    numbers = [c["text"] for c in columns if c["type"] == "number"]
    labels = [c["text"] for c in columns if c["type"] == "string"]
    if panel["type"] == "stat":
        assert panel["options"]["reduceOptions"]["calcs"] == ["sum"] and len(numbers) == 1
        values = [row[numbers[0]] for row in rows if row[numbers[0]] is not None]
        return sum(values, Decimal(0)) if values else None
    if panel["type"] == "bargauge":
        return [(row[labels[0]], row[numbers[0]]) for row in rows]
    if panel["type"] == "timeseries":
        [time] = [c["text"] for c in columns if c["type"] == "timestamp"]
        return {(row[time], *(row[label] for label in labels)): row[numbers[0]] for row in rows}
    return [tuple(row.values()) for row in transformed(rows, panel.get("transformations", []))]


def truncate(at: datetime, granularity: str) -> datetime:
    at = at.replace(minute=0, second=0, microsecond=0)
    if granularity in ("day", "month"):
        at = at.replace(hour=0)
    return at.replace(day=1) if granularity == "month" else at


def month_start(at: datetime) -> datetime:
    return at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def forecasts(usage: list[Usage], as_of: datetime) -> dict[str, Fraction]:
    """Per customer: the month so far, plus its hourly rate over the last 168 complete hours since
    its first usage in them, until the month's last instant."""
    month = month_start(as_of)
    month_end = month_start(month + timedelta(days=32))
    rate_end = as_of.replace(minute=0, second=0, microsecond=0)
    rate_start = rate_end - RUN_RATE_HOURS * HOUR
    hours_left = Fraction((month_end - as_of) // timedelta(microseconds=1), 3_600_000_000)
    figures: dict[str, Fraction] = defaultdict(Fraction)
    recent: dict[str, Fraction] = defaultdict(Fraction)
    first_hour: dict[str, datetime] = {}
    for u in usage:
        if month <= u.start < as_of:
            figures[u.customer] += Fraction(u.amount)
        if rate_start <= u.start < rate_end:
            recent[u.customer] += Fraction(u.amount)
            hour = u.start.replace(minute=0, second=0, microsecond=0)
            first_hour[u.customer] = min(first_hour.get(u.customer, hour), hour)
    for customer, cost in recent.items():
        figures[customer] += cost / ((rate_end - first_hour[customer]) // HOUR) * hours_left
    return dict(figures)


def burned_by(usage: list[Usage], at: datetime, as_of: datetime) -> Decimal:
    """The rated cost the credit ledger holds at ``at``: an hour's usage is charged at its last
    instant once it has ended, the hour under way at ``as_of``."""
    total = Decimal(0)
    for u in usage:
        hour_end = u.start.replace(minute=0, second=0, microsecond=0) + HOUR
        charged = hour_end - timedelta(milliseconds=1) if hour_end <= as_of else as_of
        total += u.amount if charged <= at else 0
    return total


def hourly_rate(usage: list[Usage], as_of: datetime) -> Fraction:
    """The cost of the last 168 complete hours over the hours since the first usage in them."""
    rate_end = as_of.replace(minute=0, second=0, microsecond=0)
    recent = [u for u in usage if rate_end - RUN_RATE_HOURS * HOUR <= u.start < rate_end]
    first = min(u.start.replace(minute=0, second=0, microsecond=0) for u in recent)
    return sum((Fraction(u.amount) for u in recent), Fraction(0)) / ((rate_end - first) // HOUR)


def summed(usage: list[Usage], key: Callable[[Usage], Any], figure: str = "amount") -> dict[Any, Decimal]:
    totals: dict[Any, Decimal] = defaultdict(Decimal)
    for u in usage:
        totals[key(u)] += getattr(u, figure)
    return dict(totals)


def six_places(rate: Fraction) -> Decimal:
    """A rate per hour as every report shows it: to 6 places, half away from zero."""
    return (Decimal(rate.numerator) / Decimal(rate.denominator)).quantize(Decimal("0.000001"), ROUND_HALF_UP)


def cents(amount: Decimal) -> Decimal:
    """Money as ``/v1/costs`` and the month to date show it: summed exactly, rounded once to the
    cent, half away from zero."""
    return amount.quantize(CENT, ROUND_HALF_UP)


def in_cents(totals: dict[Any, Decimal]) -> dict[Any, Decimal]:
    return {key: cents(amount) for key, amount in totals.items()}


def ranked(totals: dict[str, Decimal]) -> list[tuple[str, Decimal]]:
    """Costliest first (by the exact amount), shown in cents."""
    return [(group, cents(amount)) for group, amount in sorted(totals.items(), key=lambda item: (-item[1], item[0]))]


@dataclass(frozen=True)
class Shown:
    """A panel's figures, and what the request that produced them answered."""

    figures: Any
    body: Any
    span: TimeRange
    asked: datetime
    answered: datetime


def run(sent: Sent, key: str, board: dict[str, Any], panel: dict[str, Any], customer: str) -> Shown:
    """A panel as Grafana runs it now, with ``key`` in the data source and ``customer`` picked."""
    [target] = panel["targets"]
    asked = datetime.now(UTC)
    span = panel_range(board, panel, asked.replace(microsecond=asked.microsecond // 1000 * 1000))
    variables = {"customer": customer}
    body = request(sent.system, key, target, span, variables)
    answered = datetime.now(UTC)
    figures = shown(panel, framed(body, target, span, variables), target["columns"])
    return Shown(figures, body, span, asked, answered)


def check(sent: Sent, panel: Shown, title: str, usage: list[Usage]) -> None:
    """Compare what a panel shows with the recount of ``usage``: what the key sees, and on the
    customer dashboard what the picked customer used."""
    figures, span = panel.figures, panel.span
    in_range = [u for u in usage if span.start <= u.start < span.end]
    granularity = panel.body.get("granularity")
    if title == "Revenue today":  # each customer's total in cents, summed by the stat
        assert (figures or 0) == sum(in_cents(summed(in_range, lambda u: u.customer)).values()), title
    elif title == "Cost in the time range":  # the usage API's rows are exact
        assert (figures or 0) == sum(u.amount for u in in_range), title
    elif title in ("Revenue this month", "This month so far"):
        as_of = datetime.fromisoformat(panel.body["as_of"])
        this_month = [u for u in usage if month_start(as_of) <= u.start < as_of]
        assert (figures or 0) == sum(in_cents(summed(this_month, lambda u: u.customer)).values()), title
    elif title == "Month forecast":
        expected = forecasts(usage, datetime.fromisoformat(panel.body["as_of"]))
        # each customer's forecast is rounded to the cent: the sum is within half a cent each
        assert abs(Fraction(figures) - sum(expected.values())) <= Fraction(len(expected), 200), title
    elif title == "Credit balance":  # the picked customer's
        [customer] = {u.customer for u in usage}
        assert figures == cents(max(CREDIT[customer] - sum(u.amount for u in usage), Decimal(0))), title
    elif title == "Credit burn-down":
        as_of = datetime.fromisoformat(panel.body["as_of"])
        [customer] = {u.customer for u in usage}
        points = [*bucket_ends(span.start, min(span.end, as_of), granularity), min(span.end, as_of)]
        expected = {
            (at, customer): cents(max(CREDIT[customer] - burned_by(usage, at, as_of), Decimal(0))) for at in points
        }
        assert figures == expected, title
    elif title == "Prepaid credit, lowest balances first":
        as_of = datetime.fromisoformat(panel.body["as_of"])
        rows = []
        for customer, granted in CREDIT.items():
            own = [u for u in usage if u.customer == customer]
            balance = max(granted - sum(u.amount for u in own), Decimal(0))
            rate = hourly_rate(own, as_of)
            runs_out = as_of if balance <= 0 else as_of + timedelta(seconds=int(Fraction(balance) / rate * 3600))
            rows.append((customer, cents(balance), six_places(rate), runs_out))
        assert figures == sorted(rows, key=lambda row: (row[1], row[0])), title
    elif title == "Events stored / s":
        assert figures <= Decimal(sent.events) / 300
        if panel.answered - sent.sent_at < INGEST_WINDOW:  # every event was stored in the last 5 minutes
            assert figures == Decimal(sent.events) / 300, title
    elif title == "Since the last stored message":
        earliest, latest = panel.asked - sent.stored_by, panel.answered - sent.sent_at
        assert Decimal(earliest.total_seconds()) - Decimal("0.001") <= figures <= Decimal(latest.total_seconds())
    elif title in ("Top customers this month", "Top products this month"):
        of: Callable[[Usage], str] = (lambda u: u.customer) if "customers" in title else (lambda u: u.product)
        assert figures == ranked(summed(in_range, of))[:10], title
    elif title == "Cost over time by product":
        assert figures == in_cents(summed(in_range, lambda u: (truncate(u.start, granularity), u.product))), title
    elif title == "Cost over time by meter":
        assert figures == summed(in_range, lambda u: (truncate(u.start, granularity), u.meter, u.dimension)), title
    elif title == "Usage over time":
        series = summed(in_range, lambda u: (truncate(u.start, granularity), u.meter, u.dimension, u.unit), "quantity")
        assert figures == series, title
    elif title == "Resources by cost in the time range":
        costs = summed(in_range, lambda u: (u.resource, u.product))
        assert figures == [(r, p, cost) for (r, p), cost in sorted(costs.items(), key=lambda i: (-i[1], i[0]))][:50]
    else:
        raise AssertionError(f"no recount for the panel {title!r}")


def variable_options(sent: Sent, key: str, board: dict[str, Any]) -> list[str]:
    """The customer variable's options, as Grafana lists them (sort 1: alphabetical)."""
    [variable] = board["templating"]["list"]
    target = variable["query"]["infinityQuery"]
    span = panel_range(board, {}, datetime.now(UTC))
    [column] = target["columns"]
    values = [row[column["text"]] for row in framed(request(sent.system, key, target, span, {}), target, span, {})]
    assert variable["sort"] == 1
    return sorted(values)


@pytest.mark.parametrize(("dashboard", "panel"), API_PANELS, ids=[f"{d}: {p['title']}" for d, p in API_PANELS])
def test_every_api_panel_shows_what_the_usage_sent_adds_up_to(sent: Sent, dashboard: str, panel: dict[str, Any]):
    """With a reader key: every customer on the provider overview, ``direct`` on the other."""
    board = dict(boards())[dashboard]
    shown_ = run(sent, sent.reader, board, panel, "direct")
    assert shown_.figures not in (None, [], {}), f"{panel['title']} shows nothing over the usage sent"
    whose = sent.usage if dashboard == "provider-overview" else [u for u in sent.usage if u.customer == "direct"]
    check(sent, shown_, panel["title"], whose)


def test_the_customer_variable_lists_the_customers_with_usage_in_the_range(sent: Sent):
    assert variable_options(sent, sent.reader, dict(boards())["customer-usage"]) == ["direct", "resold"]


def test_a_partner_key_or_a_read_token_gets_dashboards_of_its_own_customers(sent: Sent):
    """The same dashboards, with the partner north's key or a read token of its customer in the
    data source: only ``resold`` is listed, and every figure is ``resold``'s alone."""
    admin = sent.system.http
    partner = admin.post("/v1/keys", json={"name": "north", "role": "partner", "party_id": "north"}).json()["key"]
    token = admin.post("/v1/tokens", json={"party_id": "resold"}).json()["token"]
    resold = [u for u in sent.usage if u.customer == "resold"]
    customer, overview = dict(boards())["customer-usage"], dict(boards())["provider-overview"]
    top_customers = next(panel for panel in overview["panels"] if panel["title"] == "Top customers this month")
    for key in (partner, token):
        assert variable_options(sent, key, customer) == ["resold"]
        for panel in customer["panels"]:
            check(sent, run(sent, key, customer, panel, "resold"), panel["title"], resold)
        check(sent, run(sent, key, overview, top_customers, ""), top_customers["title"], resold)


def test_the_customer_dashboard_shows_a_month_of_direct_worked_out_by_hand(sent: Sent):
    """Over its 30 days, direct used 9 VM-hours (vm-a 6, vm-b 3) x 0.094 = 0.846 and restored
    12.5 GB twice, 2 x 0.5625 = 1.125: 1.971 in all; by resource bk-1 1.125, vm-a 6 x 0.094 =
    0.564, vm-b 3 x 0.094 = 0.282."""
    board = dict(boards())["customer-usage"]
    panel = {panel["title"]: panel for panel in board["panels"]}
    assert run(sent, sent.reader, board, panel["Cost in the time range"], "direct").figures == Decimal("1.971")
    # 1.00 of credit, 1.971 used: none left
    assert run(sent, sent.reader, board, panel["Credit balance"], "direct").figures == Decimal("0.00")
    assert run(sent, sent.reader, board, panel["Resources by cost in the time range"], "direct").figures == [
        ("bk-1", "restore_gb", Decimal("1.125")),
        ("vm-a", "vm", Decimal("0.564")),
        ("vm-b", "vm", Decimal("0.282")),
    ]
