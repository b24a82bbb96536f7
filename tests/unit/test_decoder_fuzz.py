"""Fuzzing the event decoder: whatever bytes arrive, validation answers with events and
reasons, never an exception, and what it accepts is exactly what came (byte for byte)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.intake import split_message
from tests.factories import vdc_allocation, vm_sample, xaas_usage

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
EVENTS = [vm_sample(), vdc_allocation(), xaas_usage()]


def replaced(event: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    """The event with the value at ``path`` (envelope or data field) replaced."""
    copy = json.loads(json.dumps(event))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copy


FIELDS = st.sampled_from(
    [["id"], ["time"], ["type"], ["specversion"], ["data"], ["data", "customer_id"], ["data", "interval_s"]]
    + [["data", "vcpu"], ["data", "disks"], ["data", "net_tx_bytes"], ["data", "quantity"], ["data", "cpu_mhz"]]
)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300) | json_values.map(lambda value: json.dumps(value).encode()))
def test_any_bytes_get_events_or_reasons_never_an_exception(payload):
    checked = split_message(payload)
    assert all(rejection.reason for rejection in checked.rejected)
    for index in range(len(checked.events)):
        assert checked.raw(index) in payload


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(EVENTS), FIELDS, json_values, st.integers(0, 2))
def test_a_mangled_field_refuses_that_event_alone_and_keeps_its_neighbours(event, path, value, position):
    if path[0] == "data" and len(path) == 2 and path[1] not in event["data"]:
        path = ["data", "customer_id"]
    mangled = replaced(event, path, value)
    batch = [vm_sample("vm-a"), vm_sample("vm-b")]
    batch.insert(position, mangled)
    checked = split_message(json.dumps(batch).encode())  # the standard encoder writes big integers too
    kept = {e.id for e in checked.events}
    assert {batch[n]["id"] for n in range(3) if n != position} <= kept, "the valid neighbours are kept"
    assert len(checked.events) + len(checked.rejected) == 3
    for rejection in checked.rejected:
        assert rejection.index == position and rejection.reason
