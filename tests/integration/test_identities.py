"""An event's identity holds in storage: across worker restarts, customers and price changes.

Each case writes through the sink's own storage code (``UsageStore``) into the real engine,
with a fresh worker window per batch (as after a worker restart), and reads back what is stored.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest

from billing.adapters.catalog_file import load_catalog
from billing.invoices import UsageScope
from billing.pricing import PriceBook, price_book
from pipeline.dedup import RecentEvents
from pipeline.processing import process_batch
from schemas.events import Event, encode_batch
from schemas.meters import Meter
from schemas.records import USAGE_EVENT_SCHEMA, decode_frame, encode_frame, message_id
from storage.connection import ClientPool
from storage.rollups import drift
from storage.usage_queries import LineScope, UsageQueries
from storage.usage_store import UsageStore
from tests.factories import AT, vm_sample, xaas_usage
from tests.integration.harness import System, wait_for
from tests.integration.test_invoicing import push

pytestmark = pytest.mark.integration

DB = "meterline"
BOOK = price_book(load_catalog(Path("billing/catalog.yaml")))
STORED = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)


def frame(events: list[Event], book: PriceBook = BOOK) -> pa.Table:
    """What a worker that just started (an empty window) sends the sink for ``events``."""
    outcome = process_batch([encode_batch(events)], RecentEvents(), book)
    return decode_frame(encode_frame(outcome.events, USAGE_EVENT_SCHEMA))


def stored(engine: Any) -> list[tuple[str, str, str]]:
    rows = engine.query(f"SELECT source, id, customer_id FROM {DB}.usage_events FINAL ORDER BY customer_id")
    return [tuple(row) for row in rows.result_rows]


def vcpu_amounts(engine: Any) -> list[Decimal]:
    query = f"SELECT amount FROM {DB}.rated_usage WHERE meter = 'vcpu_hours' ORDER BY event_id"
    return [row[0] for row in engine.query(query).result_rows]


def test_a_conflicting_copy_for_another_customer_is_refused_after_a_worker_restart(engine):
    store = UsageStore(engine, DB)
    first = vm_sample(customer_id="cust-a")
    other_customer = {**first, "data": {**first["data"], "customer_id": "cust-b", "disks": []}}

    store.write(frame([first]), STORED)
    outcome = store.write(frame([other_customer]), STORED)

    assert outcome.new.num_rows == 0
    assert outcome.conflicts.num_rows == 1
    assert "conflict" in outcome.reasons[0] and "test://hv-1" in outcome.reasons[0]
    assert stored(engine) == [("test://hv-1", first["id"], "cust-a")], "cust-b is billed nothing"
    assert drift(engine, DB) == 0


def test_a_repeat_keeps_the_amount_first_stored_after_a_price_change(engine):
    """2 vCPU running 300 s = 600 vCPU-s = 1/6 vCPU-h; at the list's 0.0250 that is
    0.0041666… stored rounded at 12 places, 0.004166666667. Rated again at 9.99 after a retroactive
    plan it would be 1.665: the repeat must not replace it."""
    store = UsageStore(engine, DB)
    event = vm_sample(customer_id="cust-a")
    retroactive = replace(
        BOOK,
        prices=tuple(
            replace(price, unit_price=Decimal("9.99")) if price.meter is Meter.VCPU_HOURS else price
            for price in BOOK.prices
        ),
    )
    store.write(frame([event]), STORED)

    outcome = store.write(frame([event], retroactive), STORED)

    assert outcome.new.num_rows == 0 and outcome.repeats.num_rows == 1 and outcome.conflicts.num_rows == 0
    assert vcpu_amounts(engine) == [Decimal("0.004166666667")]


def test_copies_within_one_flush_count_once_and_a_conflict_among_them_is_refused(engine):
    store = UsageStore(engine, DB)
    event = vm_sample(customer_id="cust-a")
    conflicting = {**event, "data": {**event["data"], "vcpu": 64}}
    twice = pa.concat_tables([frame([event]), frame([event]), frame([conflicting])])

    outcome = store.write(twice, STORED)

    assert (outcome.new.num_rows, outcome.repeats.num_rows, outcome.conflicts.num_rows) == (1, 1, 1)
    assert stored(engine) == [("test://hv-1", event["id"], "cust-a")]
    assert vcpu_amounts(engine) == [Decimal("0.004166666667")]


def test_events_stored_before_digests_are_told_apart_by_customer_resource_and_time(engine):
    """Rows written before migration 42 carry digest 0: a later copy about the same customer,
    resource and time is a repeat, one about another customer a conflict."""
    store = UsageStore(engine, DB)
    event = vm_sample(customer_id="cust-a")
    legacy = frame([event])
    legacy = legacy.set_column(legacy.schema.get_field_index("digest"), "digest", pa.array([0], pa.uint64()))
    store.write(legacy, STORED)
    other_customer = {**event, "data": {**event["data"], "customer_id": "cust-b"}}

    assert store.write(frame([event]), STORED).repeats.num_rows == 1
    assert store.write(frame([other_customer]), STORED).conflicts.num_rows == 1
    assert stored(engine) == [("test://hv-1", event["id"], "cust-a")]


def test_an_identity_is_recorded_only_after_its_event_is_written(engine, monkeypatch):
    """A crash between writing the events and recording their identities: the redelivered
    events are new again, written again onto the same rows, and then recorded."""
    store = UsageStore(engine, DB)
    event = vm_sample(customer_id="cust-a")
    identities = store._identities  # noqa: SLF001 - the step the crash interrupts
    monkeypatch.setattr(identities, "remember", lambda written: (_ for _ in ()).throw(SystemExit("killed")))
    with pytest.raises(SystemExit):
        store.write(frame([event]), STORED)
    monkeypatch.undo()

    assert store.write(frame([event]), STORED).new.num_rows == 1
    assert store.write(frame([event]), STORED).repeats.num_rows == 1
    assert stored(engine) == [("test://hv-1", event["id"], "cust-a")]
    assert drift(engine, DB) == 0


def test_an_invoice_line_shows_only_the_events_stored_by_its_close_whatever_another_source_reuses(engine):
    """Two hypervisors' samples of vm-1 with the same id: the first stored before the close's
    cutoff, the other an hour after it. The line's drill-down shows the first only: an event is
    known by its (source, id), so the other source's is another event, stored too late."""
    store = UsageStore(engine, DB)
    billed = vm_sample(customer_id="cust-a")
    later = {
        **vm_sample(customer_id="cust-a", at=AT + timedelta(minutes=5)),
        "id": billed["id"],
        "source": "test://hv-2",
    }
    for event, stored_at in ((billed, STORED), (later, STORED + timedelta(hours=1))):
        payload = encode_batch([event])
        engine.insert(
            f"{DB}.raw_messages", [[message_id(payload), payload, stored_at]], ["message_id", "payload", "received_at"]
        )
        assert store.write(frame([event]), stored_at).new.num_rows == 1

    end = AT + timedelta(hours=1)
    line = LineScope(
        ["cust-a"], "vcpu_hours", (UsageScope("", AT - timedelta(hours=1), end),), AT - timedelta(hours=1), end, STORED
    )
    (shown,) = UsageQueries(ClientPool(lambda: engine, 1), DB).line_events(line, limit=10, offset=0)
    assert orjson.loads(shown)["source"] == "test://hv-1"


def test_a_conflicting_copy_sent_after_the_workers_restart_is_refused_on_any_broker(system: System):
    """1 GB stored for cust-a; the workers restart (their windows empty) and a copy with the same
    source and id says 500 GB for cust-b: it is dead-lettered, and cust-b is billed nothing."""
    first = xaas_usage(quantity="1", customer_id="cust-a", resource_id="bucket-1")
    copy = {**first, "data": {**first["data"], "customer_id": "cust-b", "quantity": "500"}}
    system.start_all()
    push(system, [first])
    wait_for(lambda: system.usage("cust-a")["rows"], what="the first copy stored")
    system.stop("worker")
    system.start_worker()

    push(system, [copy])

    def refused() -> list[dict[str, Any]]:
        letters = system.http.get("/v1/dead-letters", params={"source": first["source"]}).json()
        return [letter for letter in letters if letter["event_id"] == first["id"]]

    (letter,) = wait_for(refused, what="the conflict dead-lettered")
    assert "conflict" in letter["reason"]
    assert system.usage("cust-b")["rows"] == []
    assert [row["quantity"] for row in system.usage("cust-a")["rows"]] == ["1.000000000000"]


def test_a_page_of_a_lines_hourly_usage_and_events_is_the_start_of_the_whole(engine):
    """Three VMs of cust-a, a sample each at AT and at AT + 1 h: six resource-hours of one vCPU
    hour each. The first 4 of the line's rows are the first 4 of all of them, in hour and
    resource order; asking for more than there are gives them all. Events page the same way."""
    store = UsageStore(engine, DB)
    samples = [
        vm_sample(f"vm-{n}", customer_id="cust-a", at=AT + timedelta(hours=hour), interval_s=3600)
        for hour in (0, 1)
        for n in (3, 1, 2)
    ]
    for sample in samples:
        payload = encode_batch([sample])
        engine.insert(
            f"{DB}.raw_messages", [[message_id(payload), payload, STORED]], ["message_id", "payload", "received_at"]
        )
        store.write(frame([sample]), STORED)
    end = AT + timedelta(hours=2)
    line = LineScope(
        ["cust-a"], "vcpu_hours", (UsageScope("", AT - timedelta(hours=1), end),), AT - timedelta(hours=1), end, STORED
    )
    queries = UsageQueries(ClientPool(lambda: engine, 1), DB)
    every = queries.line_usage(line)
    assert [(row["period_start"].hour, row["resource_id"]) for row in every] == [
        (hour, f"vm-{n}") for hour in (AT.hour - 1, AT.hour) for n in (1, 2, 3)
    ]
    assert queries.line_usage(line, first=4) == every[:4]
    assert queries.line_usage(line, first=6) == queries.line_usage(line, first=50) == every
    events = queries.line_events(line, limit=10, offset=0)
    assert len(events) == 6 and queries.line_events(line, limit=2, offset=2) == events[2:4]
