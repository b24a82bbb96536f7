"""The same samples as JSON and as an Arrow stream rate to the same stored usage, row by row."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import polars as pl
import polars.selectors
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.adapters.catalog_file import load_catalog
from billing.pricing import price_book
from pipeline.dedup import RecentEvents
from pipeline.processing import BatchOutcome, process_batch
from schemas import columnar
from schemas.events import encode_batch
from tests.factories import AT, vm_sample

BOOK = price_book(load_catalog(Path("billing/catalog.yaml")))
WHERE_IT_CAME = ["message_id", "offset", "length"]
"""What differs by encoding: the message an event came in and where it lies there."""
RATED_LISTS = pl.selectors.starts_with("rated.")
"""An event's rated usage as lists, in no set order: compared as the rated rows they hold."""

disks = st.lists(
    st.fixed_dictionaries(
        {"tier": st.sampled_from(["ssd", "hdd", "nvme"]), "size_gib": st.integers(0, 1_048_576)},
        optional={"device": st.sampled_from(["vda", "vdb", "vdc", "sda"])},
    ),
    max_size=4,
    unique_by=lambda disk: disk.get("device", object()),
)
samples = st.lists(
    st.builds(
        lambda n, minutes, interval, state, vcpu, ram, disks, cpu, rx, tx, customer: vm_sample(
            f"vm-{n}",
            customer_id=customer,
            at=AT + timedelta(minutes=minutes, milliseconds=7 * n),
            interval_s=interval,
            power_state=state,
            vcpu=vcpu,
            ram_mb=ram,
            disks=disks,
            cpu_time_s=cpu,
            net_rx_bytes=rx,
            net_tx_bytes=tx,
        ),
        n=st.integers(0, 50),
        minutes=st.integers(0, 60 * 24 * 20),
        interval=st.integers(1, 86_400),
        state=st.sampled_from(["running", "stopped", "suspended"]),
        vcpu=st.integers(0, 4096),
        ram=st.integers(0, 67_108_864),
        disks=disks,
        cpu=st.floats(0, 1e9),
        rx=st.integers(0, 10**15),
        tx=st.integers(0, 10**15),
        customer=st.sampled_from(["cust-1", "cust-2", "acme-direct"]),
    ),
    min_size=1,
    max_size=30,
)


def stage(payload: bytes) -> BatchOutcome:
    return process_batch([payload], RecentEvents(), BOOK)


@given(samples)
@settings(max_examples=80, deadline=None)
def test_both_encodings_store_the_same_usage_row_by_row(events):
    as_json, as_rows = stage(encode_batch(events)), stage(columnar.encode(events))
    assert [r.reason for r in as_rows.rejected] == [r.reason for r in as_json.rejected]
    order = ["source", "id"]
    stored_rows, stored_json = (o.events.drop(*WHERE_IT_CAME, RATED_LISTS).sort(order) for o in (as_rows, as_json))
    assert stored_rows.equals(stored_json)
    rated_order = ["source", "event_id", "meter", "dimension", "usage_start"]
    assert as_rows.rated.sort(rated_order).equals(as_json.rated.sort(rated_order))
    assert as_rows.identities == as_json.identities


def test_a_sample_sent_in_each_encoding_is_one_sample():
    """Its identity is its source and id, and its content digest the JSON event's: the second
    copy is a repeat, not a conflict."""
    recent, sample = RecentEvents(), vm_sample("vm-1")
    first = process_batch([columnar.encode([sample])], recent, BOOK)
    recent.remember(first.identities)
    second = process_batch([encode_batch([sample])], recent, BOOK)
    assert first.events.height == 1 and not first.rejected
    assert (second.events.height, second.duplicates, second.rejected) == (0, 1, [])


def test_a_bad_row_is_refused_alone_with_its_reason():
    good, bad = vm_sample("vm-1"), vm_sample("vm-2", vcpu=5000)
    outcome = stage(columnar.encode([good, bad, vm_sample("vm-3")]))
    assert outcome.events["resource_id"].to_list() == ["vm-1", "vm-3"]
    (refused,) = outcome.rejected
    assert (refused.index, refused.event_id) == (1, bad["id"])
    assert refused.reason == "data.vcpu: Expected `int` >= 0 and <= 4096"
    assert refused.event["data"]["vcpu"] == 5000, "the dead letter shows the row as the JSON event it stands for"


def test_columnar_and_json_messages_of_one_group_are_both_handled():
    outcome = process_batch(
        [columnar.encode([vm_sample("vm-1")]), encode_batch([vm_sample("vm-2")])], RecentEvents(), BOOK
    )
    assert sorted(outcome.events["resource_id"].to_list()) == ["vm-1", "vm-2"]
    assert outcome.events.filter(pl.col("resource_id") == "vm-1")["length"].to_list() == [0]
