"""Numbered messages, stored receipts, and when a producer sends a delivered batch again."""

from __future__ import annotations

from datetime import timedelta

import orjson

from agents.publisher import OVERTAKEN_GRACE_S, RESEND_AFTER_S, Delivered, lost_batches, note_overtaken
from pipeline.dedup import RecentEvents
from pipeline.processing import process_batch, rated_parts
from schemas import receipts
from schemas.events import encode_batch
from tests.factories import AT, vm_sample
from tests.unit.test_exactly_once_in_the_stage import BOOK


def test_stored_numbers_travel_as_ranges():
    assert receipts.ranges_of([7, 1, 3, 2, 2, 9, 8]) == [(1, 3), (7, 9)]
    handled = [receipts.Handled("agent/b", 5, 0), receipts.Handled("agent/a", 2, 1), receipts.Handled("agent/a", 1, 1)]
    (a, b) = receipts.receipts_of(handled)
    assert (a.producer, a.ranges, list(a.numbers())) == ("agent/a", [(1, 2)], [1, 2])
    assert receipts.decode_receipt(receipts.encode(b)) == b


def test_a_message_not_numbered_by_a_meterline_producer_has_no_number():
    assert receipts.numbered(receipts.headers_of("intake/api", 42)) == ("intake/api", 42)
    assert receipts.numbered({"meterline-producer": b"x", "meterline-seq": b"7"}) == ("x", 7)
    assert receipts.numbered(None) is None
    assert receipts.numbered([("meterline-producer", b"x")]) is None
    assert receipts.numbered([("meterline-producer", b"x"), ("meterline-seq", b"seven")]) is None


def test_each_numbered_message_is_reported_with_its_new_events_and_their_span():
    """Two messages: the first brings two samples (10:00-10:05 and 10:05-10:10), the second
    only a repeat of the first sample, so it counts no event and has no span."""
    one, two = vm_sample("vm-1", at=AT), vm_sample("vm-1", at=AT + timedelta(minutes=5))
    payloads = [encode_batch([one, two]), encode_batch([one]), encode_batch([two])]
    outcome = process_batch(payloads, RecentEvents(), BOOK)
    [part] = rated_parts([0, 0, 0], [("agent/a", 1), ("agent/a", 2), None], payloads, outcome.events)
    handled = part.handled
    assert (part.partition, part.events.height) == (0, 2)
    assert handled == [
        receipts.Handled("agent/a", 1, 2, AT - timedelta(minutes=5), AT + timedelta(minutes=5)),
        receipts.Handled("agent/a", 2, 0),
    ]
    assert orjson.loads(receipts.encode(handled))[1] == {
        "producer": "agent/a",
        "seq": 2,
        "events": 0,
        "first_usage": None,
        "last_usage": None,
    }


def test_a_group_is_sent_to_the_rated_partitions_of_the_partitions_it_read():
    """Messages 1 and 3 were read from partition 2, message 2 from partition 0: each partition's
    part holds its own messages' new events and numbers, in the order read. Message 4 is the
    same bytes as message 1 read again from partition 0: its event goes once, with partition 2."""
    one, two, three = (vm_sample(f"vm-{n}", at=AT) for n in (1, 2, 3))
    payloads = [encode_batch([one]), encode_batch([two]), encode_batch([three]), encode_batch([one])]
    outcome = process_batch(payloads, RecentEvents(), BOOK)
    numbers = [("agent/a", 1), ("agent/b", 2), ("agent/a", 3), ("agent/b", 4)]
    first, second = rated_parts([2, 0, 2, 0], numbers, payloads, outcome.events)
    assert first.partition == 2
    assert first.events["resource_id"].to_list() == ["vm-1", "vm-3"]
    assert [(h.producer, h.seq, h.events) for h in first.handled] == [("agent/a", 1, 1), ("agent/a", 3, 1)]
    assert second.partition == 0
    assert second.events["resource_id"].to_list() == ["vm-2"]
    assert [(h.producer, h.seq, h.events) for h in second.handled] == [("agent/b", 2, 1), ("agent/b", 4, 1)]


def test_a_delivered_batch_is_sent_again_only_when_it_is_known_or_likely_lost():
    """Batches 1, 2 and 3 went to partition 0 before a batch that is stored: a partition is read
    in order, so they are lost once they stay overtaken for the grace (a partition moving between
    workers can store its output a moment out of order), however old they are. Partition 1
    has nothing stored: its batches wait, unless nothing at all was stored for a long time (4)."""
    now = 10_000.0
    delivered = {
        1: Delivered(partition=0, at=now - 300),
        2: Delivered(partition=0, at=now - 2),
        3: Delivered(partition=0, at=now - 301),
        4: Delivered(partition=1, at=now - RESEND_AFTER_S),
        5: Delivered(partition=1, at=now - RESEND_AFTER_S + 1),
    }
    overtaken: dict[int, float] = {}
    note_overtaken(delivered, {0: now - 301}, overtaken, now - OVERTAKEN_GRACE_S)
    assert overtaken == {}, "a batch stored after those delivered before it overtakes none"
    note_overtaken(delivered, {0: now - 1}, overtaken, now - OVERTAKEN_GRACE_S)
    assert sorted(overtaken) == [1, 2, 3]
    assert lost_batches(delivered, overtaken, now - 1, now - 1) == [], "overtaken a moment ago: behind, not lost"
    assert lost_batches(delivered, overtaken, now - 1, now) == [1, 2, 3]
    assert lost_batches(delivered, overtaken, now - RESEND_AFTER_S, now) == [1, 2, 3, 4]
