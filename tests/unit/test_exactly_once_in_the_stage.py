"""Re-sending any subset of events never changes what the stage rates."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.billing.catalog import load_catalog
from pipeline.dedup import RecentIds
from pipeline.processing import BatchOutcome, process_batch
from schemas.events import encode_batch
from tests.factories import AT, vm_sample, xaas_usage

BOOK = load_catalog(Path("pipeline/catalog.yaml")).price_book()
EVENTS = [vm_sample(f"vm-{n}", at=AT + timedelta(minutes=5 * n)) for n in range(6)] + [xaas_usage()]


def processed(payloads: list[bytes], recent: RecentIds) -> BatchOutcome:
    """As the worker does it: process, then remember what was sent."""
    outcome = process_batch(payloads, recent, BOOK)
    recent.remember(outcome.events["id"].to_list())
    return outcome


def total(batches: list[list[dict]]) -> Decimal:
    recent = RecentIds()
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
    recent = RecentIds()
    processed([encode_batch(EVENTS[:2])], recent)
    outcome = processed([encode_batch(EVENTS[:1]), encode_batch(EVENTS[1:3])], recent)
    assert outcome.duplicates == 2
    assert outcome.rated["event_id"].unique().to_list() == [EVENTS[2]["id"]]
    assert outcome.events["id"].to_list() == [EVENTS[2]["id"]], "a repeat is not stored again"


def test_a_batch_that_was_never_sent_is_not_a_repeat_when_it_comes_again():
    recent = RecentIds()
    process_batch([encode_batch(EVENTS[:2])], recent, BOOK)  # failed before its output was sent
    again = processed([encode_batch(EVENTS[:2])], recent)
    assert (again.duplicates, again.events.height) == (0, 2)


def test_the_window_forgets_the_oldest_ids_first():
    recent = RecentIds(capacity=2)
    assert recent.first_seen(["a", "b", "a", "c"]) == [True, True, False, True]
    recent.remember(["a", "b", "c"])
    assert recent.first_seen(["a", "b", "c"]) == [True, False, False], "only b and c were kept"


def test_the_same_sample_always_gets_the_same_id():
    assert vm_sample("vm-1")["id"] == vm_sample("vm-1", vcpu=64)["id"]
    assert vm_sample("vm-1")["id"] != vm_sample("vm-2")["id"]
    assert vm_sample("vm-1")["id"] != vm_sample("vm-1", at=AT + timedelta(minutes=5))["id"]
