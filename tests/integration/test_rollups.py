"""The rollups answer every usage read exactly as a recount of the stored events would.

Events are written through the sink's own storage code (``UsageStore``) into the real engine:
in batches, some written again in other batches, some late into hours already rolled up, some
crossing an hour, a day and a month. Every read is compared with a reference query written
here over the raw events (``rated_usage``), the way usage was read before rollups existed.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest

from agents.simulated import FleetSpec, SimulatedFleet
from billing.adapters.catalog_file import load_catalog
from billing.invoices import UsageScope
from billing.money import round_money, shown_quantity
from billing.periods import Period
from billing.pricing import PriceChange, price_book
from billing.scope import EVERYTHING, partner_scope
from pipeline.dedup import RecentEvents
from pipeline.processing import process_batch
from schemas.events import encode_batch
from schemas.meters import Meter, PeriodAggregation
from schemas.records import USAGE_EVENT_SCHEMA, decode_frame, encode_frame
from storage.billed_usage import PeriodUsage
from storage.connection import ClientPool
from storage.dashboards import CostGroup, CostWindow, Dashboards
from storage.rollups import drift
from storage.schema import migrate
from storage.usage_queries import Granularity, GroupBy, LineScope, UsageQueries, UsageWindow, totals
from storage.usage_store import UsageStore

pytestmark = pytest.mark.integration

DB = "meterline"
BOOK = price_book(load_catalog(Path("billing/catalog.yaml")))
SPEC = FleetSpec(seed=5, customers=3, hypervisors=2, vms_per_hypervisor=3, vdcs=2, xaas_items=6, interval_s=1200)
FLEET = SimulatedFleet(SPEC)
# samples of 20 minutes ending 10 past the hour: each third one crosses an hour, one crosses
# midnight between October and November
FIRST_END = datetime(2026, 10, 31, 20, 10, tzinfo=UTC)
TICKS = [FIRST_END + timedelta(minutes=20 * n) for n in range(24)]
STORED = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
LATER = STORED + timedelta(hours=1)
PEAKS = [m.value for m in Meter if m.aggregation is PeriodAggregation.PEAK]
LATEST = [m.value for m in Meter if m.aggregation is PeriodAggregation.LATEST]


def usage_of(ticks: list[datetime]) -> Any:
    events = [event for at in ticks for batch in FLEET.collect(at).values() for event in batch]
    outcome = process_batch([encode_batch(events)], RecentEvents(), BOOK)
    return decode_frame(encode_frame(outcome.events, USAGE_EVENT_SCHEMA))  # as the sink receives it


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path_factory.mktemp('rollups')}")
    migrate(client, DB)
    store = UsageStore(client, DB)
    late = TICKS[15]  # 01:10: hours that are rolled up before their last sample arrives
    on_time = [at for at in TICKS if at != late]
    # each flush a second after the one before, the last of them at STORED
    flushes = range(0, len(on_time), 4)
    for n, first in enumerate(flushes, start=1 - len(flushes)):
        store.write(usage_of(on_time[first : first + 4]), STORED + timedelta(seconds=n))
    again = random.Random(7).sample(on_time, 6)  # noqa: S311 - written again, in other batches, later
    store.write(usage_of(again[:3]), LATER - timedelta(seconds=2))  # repeats: recounted
    store.write(usage_of([late]), LATER - timedelta(seconds=1))  # late, into rolled-up hours: added
    store.write(usage_of(again[3:]), LATER)
    yield client
    client.close()  # one engine per process: let the next test open its own


def reference(
    client: Any,
    start: datetime,
    end: datetime,
    truncate: str,
    keys: list[str],
    condition: str = "1",
    parameters: dict[str, Any] | None = None,
    stored_by: datetime | None = None,
) -> dict[tuple[Any, ...], tuple[Fraction, Fraction]]:
    """(quantity, amount) per bucket and keys, from every rated row, each event once, both exact:
    a base quantity times its unit price is exact, and divided once (a level's rows are worth
    nothing until the close)."""
    per_resource = ", ".join(dict.fromkeys([*keys, "meter", "resource_id", "base_divisor"]))
    first_stored = ""
    if stored_by:
        first_stored = f"AND event_id IN (SELECT id FROM {DB}.usage_events GROUP BY id "
        first_stored += "HAVING min(inserted_at) <= {stored_by:DateTime64(3)})"
    query = f"""SELECT period_start, {", ".join(keys)}, base_divisor, sum(base), sum(amount) FROM (
        SELECT toDateTime({truncate}(usage_start), 'UTC') AS period_start, {per_resource},
            multiIf(meter IN {{peaks:Array(String)}}, max(base_quantity), meter IN {{latest:Array(String)}},
                argMax(base_quantity, usage_start), sum(base_quantity)) AS base,
            sum(if(meter IN {{peaks:Array(String)}} OR meter IN {{latest:Array(String)}}, toDecimal256(0, 24),
                toDecimal256(base_quantity, 12) * unit_price)) AS amount
        FROM {DB}.rated_usage
        WHERE usage_start >= {{start:DateTime64(3)}} AND usage_start < {{end:DateTime64(3)}}
            AND ({condition}) {first_stored}
        GROUP BY period_start, {per_resource})
    GROUP BY period_start, {", ".join(keys)}, base_divisor"""
    parameters = {**(parameters or {}), "start": start, "end": end, "stored_by": stored_by, "peaks": PEAKS}
    parameters["latest"] = LATEST
    totals: dict[tuple[Any, ...], tuple[Fraction, Fraction]] = {}
    for *key, divisor, base, amount in client.query(query, parameters=parameters).result_rows:
        quantity, money = totals.get(tuple(key), (Fraction(0), Fraction(0)))
        totals[tuple(key)] = (quantity + Fraction(base) / divisor, money + Fraction(amount) / divisor)
    return totals


def test_rollups_equal_a_recount_of_the_stored_events(client):
    assert drift(client, DB) == 0
    hours = client.command(f"SELECT count() FROM {DB}.usage_hours FINAL")
    assert int(hours) > 0


WINDOWS = [
    (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)),
    (datetime(2026, 10, 31, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)),
    (datetime(2026, 10, 31, 21, 17, 30, tzinfo=UTC), datetime(2026, 11, 1, 2, 43, tzinfo=UTC)),
    (datetime(2026, 10, 31, 22, 0, tzinfo=UTC), datetime(2026, 10, 31, 22, 35, tzinfo=UTC)),
    (datetime(2026, 11, 1, 1, 0, tzinfo=UTC), datetime(2026, 11, 1, 2, 0, tzinfo=UTC)),
]


@pytest.mark.parametrize(("start", "end"), WINDOWS)
@pytest.mark.parametrize("granularity", list(Granularity))
@pytest.mark.parametrize("group_by", list(GroupBy))
def test_usage_reads_equal_the_raw_events(client, start, end, granularity, group_by):
    queries = UsageQueries(ClientPool(lambda: client, 1), DB)
    keys = ["period_start", *group_by.columns, "currency"]
    customers = sorted({vm.customer_id for vm in FLEET.vms})
    for customer in customers:
        window = UsageWindow(customer, start, end)
        table = queries.usage(EVERYTHING, window, granularity, group_by)
        rows = table.to_pylist()
        for row in rows:
            row["period_start"] = row["period_start"].replace(tzinfo=None)  # as the reference has it
        got = {tuple(row[k] for k in keys): (row["quantity"], row["amount"]) for row in rows}
        expected = reference(
            client, start, end, granularity.truncate_sql, keys[1:], "customer_id = {c:String}", {"c": customer}
        )
        assert got == {key: (shown_quantity(q), shown_quantity(amount)) for key, (q, amount) in expected.items()}
        total = sum((shown_quantity(amount) for _, amount in expected.values()), Decimal(0))
        assert totals(table).get("EUR", Decimal(0)) == total


CHANGES = [
    PriceChange("vcpu_hours", "*", datetime(2026, 11, 1, 0, 17, 30, tzinfo=UTC)),
    PriceChange("ram_gib_hours", "*", datetime(2026, 11, 1, 1, 0, tzinfo=UTC)),
    PriceChange("xaas_peak_units", "*", datetime(2026, 11, 1, 0, 40, tzinfo=UTC)),
]


@pytest.mark.parametrize("cutoff", [STORED, LATER])
def test_a_close_reads_what_was_stored_by_its_cutoff_cut_at_price_changes(client, cutoff):
    period = Period.parse("2026-11")
    totals = PeriodUsage(client, DB).totals(period, CHANGES, cutoff)
    got = {(t.customer_id, t.meter, t.dimension, t.start): t.quantity for t in totals}
    expected: dict[tuple[Any, ...], Fraction] = {}
    for meter in Meter:
        cuts = [c.at for c in CHANGES if c.meter == meter.value]
        bounds = [period.start, *cuts, period.end]
        for lo, hi in zip(bounds, bounds[1:], strict=False):
            parts = reference(
                client,
                lo,
                hi,
                "toStartOfMonth",
                ["customer_id", "dimension"],
                "meter = {m:String}",
                {"m": meter.value},
                stored_by=cutoff,
            )
            for (_, customer, dimension), (quantity, _) in parts.items():
                expected[(customer, meter.value, dimension, lo)] = quantity
    assert got == expected
    assert len(got) > 10


@pytest.mark.parametrize("stored_by", [STORED, LATER])
def test_an_invoice_lines_hours_are_what_its_close_saw(client, stored_by):
    customers = sorted({vm.customer_id for vm in FLEET.vms})
    start, end = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    scopes = (UsageScope("", start, datetime(2026, 11, 1, 0, 30, tzinfo=UTC)),)
    scopes += (UsageScope("", datetime(2026, 11, 1, 1, 10, tzinfo=UTC), end),)
    line = LineScope(customers, "vcpu_hours", scopes, start, end, stored_by)
    hours = UsageQueries(ClientPool(lambda: client, 1), DB).line_usage(line)
    keys = ["customer_id", "resource_id", "product", "dimension"]
    got = {(row["period_start"], *(row[k] for k in keys)): row["quantity"] for row in hours}
    condition = (
        "customer_id IN {cs:Array(String)} AND meter = 'vcpu_hours' AND (usage_start < {a:DateTime64(3)} "
        "OR usage_start >= {b:DateTime64(3)})"
    )
    parameters = {"cs": customers, "a": scopes[0].end, "b": scopes[1].start}
    expected = reference(client, start, end, "toStartOfHour", keys, condition, parameters, stored_by)
    assert got == {key: quantity for key, (quantity, _) in expected.items()}
    assert got


@pytest.mark.parametrize("stored_by", [STORED, LATER])
def test_an_invoice_lines_quantity_is_counted_as_its_close_counted_it(client, stored_by):
    """A level is its highest figure per resource, dimension and scope, summed: two scopes of one
    dimension split at 00:40 each have their own peak, as two price parts of a close do."""
    customers = sorted({vm.customer_id for vm in FLEET.vms})
    start, end = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    split = datetime(2026, 11, 1, 0, 40, tzinfo=UTC)
    condition = "customer_id IN {cs:Array(String)} AND meter = 'xaas_peak_units'"
    expected = Fraction(0)
    dimensions = set()
    for lo, hi in ((start, split), (split, end)):
        parts = reference(
            client, lo, hi, "toStartOfMonth", ["dimension"], condition, {"cs": customers}, stored_by=stored_by
        )
        dimensions |= {dimension for (_, dimension) in parts}
        expected += sum((quantity for quantity, _ in parts.values()), Fraction(0))
    scopes = tuple(UsageScope(d, lo, hi) for d in sorted(dimensions) for lo, hi in ((start, split), (split, end)))
    line = LineScope(customers, "xaas_peak_units", scopes, start, end, stored_by)
    assert UsageQueries(ClientPool(lambda: client, 1), DB).line_quantity(line) == expected
    whole = LineScope(
        customers, "xaas_peak_units", tuple(UsageScope(d, start, end) for d in dimensions), start, end, stored_by
    )
    assert UsageQueries(ClientPool(lambda: client, 1), DB).line_quantity(whole) < expected, "a peak per scope"


CATALOG = load_catalog(Path("billing/catalog.yaml"))
NOVEMBER = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 1, 3, 30, tzinfo=UTC))


@pytest.mark.parametrize("group", list(CostGroup))
def test_provider_costs_over_time_by_group_equal_the_raw_events(client, group):
    dashboards = Dashboards(ClientPool(lambda: client, 1), DB)
    start, end = datetime(2026, 10, 31, 21, 17, tzinfo=UTC), datetime(2026, 11, 1, 3, 30, tzinfo=UTC)
    points, totals = dashboards.costs(EVERYTHING, CATALOG, CostWindow(start, end, Granularity.HOUR), group, top=None)
    column = {"customer": "customer_id", "partner": "customer_id", "product": "product", "meter": "meter"}[group.value]
    unit = "unit" if group is CostGroup.METER else "''"  # a meter's units may differ by dimension: not added
    expected = reference(client, start, end, "toStartOfHour", [column, "currency", unit])
    sellers = {c: p for p, cs in CATALOG.customers_of_partner.items() for c in cs}
    want: dict[tuple[Any, ...], tuple[Fraction, Fraction]] = {}
    for (period, key, currency, of), (quantity, amount) in expected.items():
        key = sellers.get(key, CATALOG.provider.id) if group is CostGroup.PARTNER else key
        at = (period.replace(tzinfo=UTC), key, currency, of or None)
        amount_so_far, quantity_so_far = want.get(at, (Fraction(0), Fraction(0)))
        want[at] = (amount_so_far + amount, quantity_so_far + quantity)
    got = {(p.period_start, p.group, p.currency, p.unit): (p.amount, p.quantity) for p in points}
    if group is CostGroup.METER:
        assert got == {k: (shown_quantity(amount), shown_quantity(quantity)) for k, (amount, quantity) in want.items()}
    else:
        assert got == {key: (shown_quantity(amount), None) for key, (amount, _) in want.items()}
    assert sum(t.amount for t in totals) == sum(shown_quantity(amount) for amount, _ in want.values())
    assert [t.amount for t in totals] == sorted((t.amount for t in totals), reverse=True)


def test_top_n_keeps_the_highest_and_sums_the_rest_as_other(client):
    dashboards = Dashboards(ClientPool(lambda: client, 1), DB)
    window = CostWindow(*NOVEMBER, Granularity.DAY)
    _, everyone = dashboards.costs(EVERYTHING, CATALOG, window, CostGroup.CUSTOMER, top=None)
    points, top = dashboards.costs(EVERYTHING, CATALOG, window, CostGroup.CUSTOMER, top=1)
    assert [t.group for t in top] == [everyone[0].group, "(other)"]
    assert top[1].amount == sum(t.amount for t in everyone[1:])
    assert {p.group for p in points} == {everyone[0].group, "(other)"}


def test_a_partner_sees_only_its_customers_costs(client):
    dashboards = Dashboards(ClientPool(lambda: client, 1), DB)
    window = CostWindow(*NOVEMBER, Granularity.DAY)
    northwind = partner_scope(CATALOG, "northwind")
    points, _ = dashboards.costs(northwind, CATALOG, window, CostGroup.CUSTOMER, top=None)
    assert points and {p.group for p in points} <= set(northwind.customers or ())
    assert not dashboards.month_to_date(partner_scope(CATALOG, "nobody"), NOVEMBER[1], top=None)


def test_month_to_date_forecast_extends_the_run_rate_of_the_hours_with_usage(client):
    now = datetime(2026, 11, 1, 3, 30, tzinfo=UTC)
    rate_end = now.replace(minute=0)
    figures = Dashboards(ClientPool(lambda: client, 1), DB).month_to_date(EVERYTHING, now, top=None)
    so_far = reference(client, NOVEMBER[0], now, "toStartOfMonth", ["customer_id", "currency"])
    week = reference(client, rate_end - timedelta(hours=168), rate_end, "toStartOfHour", ["customer_id"])
    assert {f.customer_id for f in figures} == {c for (_, c, _) in so_far} | {c for (_, c) in week}
    for figure in figures:
        to_date = sum((a for (_, c, _), (_, a) in so_far.items() if c == figure.customer_id), Fraction(0))
        last_week = sum((a for (_, c), (_, a) in week.items() if c == figure.customer_id), Fraction(0))
        first_hour = min(hour for (hour, c) in week if c == figure.customer_id)
        hours_with_usage = (rate_end - first_hour.replace(tzinfo=UTC)) // timedelta(hours=1)
        assert 0 < hours_with_usage <= 168
        # 29 days 20 h 30 min left in November: 716.5 hours at the hourly rate since its first usage
        forecast = to_date + last_week / hours_with_usage * Fraction(7165, 10)
        assert figure.to_date == shown_quantity(to_date)
        assert figure.forecast == round_money(forecast, "EUR")
    assert [f.to_date for f in figures] == sorted((f.to_date for f in figures), reverse=True)


@pytest.mark.parametrize("first", [1, 7, 40, 10_000])
def test_a_page_of_a_lines_first_rows_is_the_first_rows_of_the_whole_line(client, first, monkeypatch):
    """The page is looked for in the line's first day, then its first eight, before the whole
    line: it must be the whole line's first rows and events, whichever of them answers."""
    customers = sorted({vm.customer_id for vm in FLEET.vms})
    start, end = datetime(2026, 10, 31, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    line = LineScope(customers, "vcpu_hours", (UsageScope("", start, end),), start, end, LATER)
    queries = UsageQueries(ClientPool(lambda: client, 1), DB)
    narrowed = queries.line_usage(line, first), queries.line_events(line, first, 0)
    monkeypatch.setattr(LineScope, "first_days", lambda self: [])
    whole = queries.line_usage(line)
    assert narrowed == (whole[:first], queries.line_events(line, first, 0))
    assert len(whole) > 40 and narrowed[1]


def test_each_resources_cost_of_each_meter_equals_the_raw_events(client):
    """What the portal's consumption page sums its products, meters and resources from."""
    dashboards = Dashboards(ClientPool(lambda: client, 1), DB)
    start, end = datetime(2026, 10, 31, 21, 17, tzinfo=UTC), datetime(2026, 11, 1, 3, 30, tzinfo=UTC)
    got: dict[tuple[Any, ...], tuple[Fraction, Fraction]] = {}
    for cost in dashboards.by_resource(EVERYTHING, start, end):
        key = (cost.resource_id, cost.product, cost.meter, cost.unit, cost.currency)
        quantity, amount = got.get(key, (Fraction(0), Fraction(0)))
        got[key] = (quantity + cost.quantity, amount + cost.amount)
    keys = ["resource_id", "product", "meter", "unit", "currency"]
    # a level is taken per dimension, then added: as the reference takes it per dimension too
    expected = reference(client, start, end, "toStartOfYear", [*keys, "dimension"])
    want: dict[tuple[Any, ...], tuple[Fraction, Fraction]] = {}
    for (_period, *key, _dimension), (quantity, amount) in expected.items():
        so_far = want.get(tuple(key), (Fraction(0), Fraction(0)))
        want[tuple(key)] = (so_far[0] + quantity, so_far[1] + amount)
    assert got == want and got
