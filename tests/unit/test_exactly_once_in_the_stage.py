"""Re-sending any subset of events never changes what the stage rates."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import orjson
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.adapters.catalog_file import load_catalog
from billing.pricing import Price, PriceBook, price_book
from pipeline.dedup import RecentEvents, Seen
from pipeline.processing import BatchOutcome, process_batch
from schemas.events import decode_event, encode_batch
from schemas.meters import Meter
from tests.factories import AT, vdc_allocation, vm_sample, xaas_usage

BOOK = price_book(load_catalog(Path("billing/catalog.yaml")))
EVENTS = [vm_sample(f"vm-{n}", at=AT + timedelta(minutes=5 * n)) for n in range(6)] + [xaas_usage()]


def processed(payloads: list[bytes], recent: RecentEvents) -> BatchOutcome:
    """As the worker does it: process, then remember what was sent."""
    outcome = process_batch(payloads, recent, BOOK)
    recent.remember(outcome.identities)
    return outcome


def total(batches: list[list[dict]]) -> Decimal:
    recent = RecentEvents()
    return sum(
        (sum(processed([encode_batch(batch)], recent).rated["amount"], Decimal(0)) for batch in batches),
        Decimal(0),
    )


@given(resent=st.lists(st.sampled_from(range(len(EVENTS))), max_size=20), size=st.integers(1, 4))
@settings(max_examples=60, deadline=None)
def test_resent_events_are_counted_once(resent, size):
    stream = EVENTS + [EVENTS[i] for i in resent]
    batches = [stream[i : i + size] for i in range(0, len(stream), size)]
    assert total(batches) == total([EVENTS])


def test_duplicates_are_counted_and_the_first_copy_wins():
    recent = RecentEvents()
    processed([encode_batch(EVENTS[:2])], recent)
    outcome = processed([encode_batch(EVENTS[:1]), encode_batch(EVENTS[1:3])], recent)
    assert outcome.duplicates == 2
    assert outcome.rated["event_id"].unique().to_list() == [EVENTS[2]["id"]]
    assert outcome.events["id"].to_list() == [EVENTS[2]["id"]], "a repeat is not stored again"


def test_a_batch_that_was_never_sent_is_not_a_repeat_when_it_comes_again():
    recent = RecentEvents()
    process_batch([encode_batch(EVENTS[:2])], recent, BOOK)  # failed before its output was sent
    again = processed([encode_batch(EVENTS[:2])], recent)
    assert (again.duplicates, again.events.height) == (0, 2)


def test_the_window_forgets_the_oldest_events_first():
    a, b, c = (decode_event(orjson.dumps(vm_sample(name))) for name in ("vm-a", "vm-b", "vm-c"))
    recent = RecentEvents(capacity=2)
    seen, digests = recent.sort([a, b, a, c])
    assert seen == [Seen.NEW, Seen.NEW, Seen.REPEAT, Seen.NEW]
    recent.remember(digests)
    assert recent.sort([a, b, c])[0] == [Seen.NEW, Seen.REPEAT, Seen.REPEAT], "only b and c were kept"


def test_the_same_source_and_id_with_other_content_is_a_conflict_refused_with_its_reason():
    """Identity is (source, id): the same id from another source is another event, and the same
    pair with another customer is refused, in the same batch as in a later one."""
    first = vm_sample("vm-1")
    other_customer = {**first, "data": {**first["data"], "customer_id": "cust-other"}}
    other_source = {**first, "source": "/agents/another"}
    recent = RecentEvents()

    outcome = processed([encode_batch([first, other_customer, other_source])], recent)
    assert outcome.events.height == 2, "the first copy and the other source's event are stored"
    ((index, reason),) = [(r.index, r.reason) for r in outcome.rejected]
    assert index == 1 and reason.startswith("conflict: ")

    later = processed([encode_batch([other_customer, first])], recent)
    assert [r.index for r in later.rejected] == [0]
    assert (later.duplicates, later.events.height) == (1, 0), "the same content again is a repeat"


def test_the_same_sample_always_gets_the_same_id():
    assert vm_sample("vm-1")["id"] == vm_sample("vm-1", vcpu=64)["id"]
    assert vm_sample("vm-1")["id"] != vm_sample("vm-2")["id"]
    assert vm_sample("vm-1")["id"] != vm_sample("vm-1", at=AT + timedelta(minutes=5))["id"]


def test_an_event_nobody_can_price_is_refused_and_the_rest_of_its_batch_is_kept():
    """vCPU is priced from AT only, so the sample covering the five minutes before AT has no
    price; the one after AT, a vDC and an XaaS item of the same message are priced as usual."""
    others = tuple(Price(meter, Decimal("0.01"), AT - timedelta(days=1)) for meter in Meter)
    book = PriceBook(
        "EUR", tuple(p for p in others if p.meter != Meter.VCPU_HOURS) + (Price(Meter.VCPU_HOURS, Decimal("0.03"), AT),)
    )
    early, late = vm_sample("vm-early", at=AT), vm_sample("vm-late", at=AT + timedelta(minutes=5))
    payload = encode_batch([early, vdc_allocation(at=AT), late, xaas_usage()])

    outcome = process_batch([payload], RecentEvents(), book)

    (refused,) = outcome.rejected
    assert (refused.index, refused.event_id, refused.event) == (0, early["id"], early)
    assert refused.reason.startswith("no price in EUR in force for meter vcpu_hours")
    kept = sorted(outcome.events["resource_id"].to_list())
    assert kept == ["bk-1", "vdc-1", "vm-late"]
    assert early["id"] not in outcome.rated["event_id"].to_list()
    late_row = outcome.events.filter(pl.col("resource_id") == "vm-late").row(0, named=True)
    assert (late_row["offset"], late_row["length"]) == _span_of(payload, late)


def _span_of(payload: bytes, event: dict) -> tuple[int, int]:
    """Where an event's JSON lies in the message it came in."""
    raw = encode_batch([event])[1:-1]
    return payload.index(raw), len(raw)


def test_events_of_two_sources_with_one_id_each_carry_only_their_own_usage():
    """An ingest key bound to cust-00002 sent 8 events reusing the id of a cust-00008 event of
    another source, with 1,000,000 units each, in the same batch: every rated row of the id went
    to each of them, and cust-00008 was billed 8,000,001 units. Identity is (source, id)."""
    victim = {**xaas_usage(quantity="1", customer_id="cust-00008", resource_id="victim-db"), "source": "victim/app"}
    attackers = [
        {
            **victim,
            "source": f"backup/s{n}",
            "data": {**victim["data"], "customer_id": "cust-00002", "quantity": "1000000"},
        }
        for n in range(8)
    ]
    outcome = process_batch([encode_batch([victim, *attackers])], RecentEvents(), BOOK)
    stored = {
        (row["source"], row["customer_id"]): [str(q) for q in row["rated.base_quantity"]]
        for row in outcome.events.iter_rows(named=True)
    }
    assert stored[("victim/app", "cust-00008")] == ["1.000000000000"], "one unit, in billionths stored exactly"
    assert all(quantities == ["1000000.000000000000"] for key, quantities in stored.items() if key[1] == "cust-00002")
    assert len(stored) == 9


def test_a_copy_written_differently_is_a_repeat_and_a_copy_that_bills_differently_a_conflict():
    """The same instant with another offset, the same quantity written another way, or a label
    added is the same usage; another figure is not."""
    first = xaas_usage(quantity="10", at=AT)
    same_usage = [
        {**first, "time": "2026-11-02T11:00:00+01:00"},
        {**first, "data": {**first["data"], "quantity": "10.0"}},
        {**first, "data": {**first["data"], "quantity": "010"}},
        {**first, "data": {**first["data"], "resource_name": "nightly backups"}, "subject": "vault"},
    ]
    vm = vm_sample("vm-9")
    relabelled_vm = {**vm, "data": {**vm["data"], "hypervisor": "hv-2", "disks": [{"tier": "ssd", "size_gib": 40}]}}
    recent = RecentEvents()
    processed([encode_batch([first, vm])], recent)
    again = processed([encode_batch([*same_usage, relabelled_vm])], recent)
    assert (again.duplicates, again.rejected) == (5, [])
    other_figure = {**first, "data": {**first["data"], "quantity": "10.5"}}
    refused = processed([encode_batch([other_figure])], recent)
    assert [r.reason.split(":")[0] for r in refused.rejected] == ["conflict"]
