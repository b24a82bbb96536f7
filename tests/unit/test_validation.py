"""Every refused event carries a reason a person can act on; nothing valid is refused."""

from __future__ import annotations

import orjson
import pytest

from pipeline.validation import split_valid
from schemas.events import encode_batch
from tests.factories import vdc_allocation, vm_sample, xaas_usage


def test_valid_events_of_every_type_pass():
    events = [vm_sample(), vdc_allocation(), xaas_usage()]
    accepted, rejected = split_valid(encode_batch(events))
    assert accepted == events
    assert rejected == []


def test_a_single_event_message_is_a_batch_of_one():
    accepted, _ = split_valid(orjson.dumps(vm_sample()))
    assert len(accepted) == 1


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda e: e["data"].update(vcpu=-1), "data.vcpu: -1 is less than the minimum of 0"),
        (lambda e: e["data"].pop("customer_id"), 'data: "customer_id" is a required property'),
        (lambda e: e.update(type="vm.unknown"), 'type: "vm.unknown" is not one of'),
        (lambda e: e.update(time="yesterday"), 'time: "yesterday" does not match'),
        (lambda e: e.update(time="2026-13-45T10:00:00Z"), "time is not a valid timestamp"),
        (lambda e: e["data"].update(power_state="exploded"), 'data.power_state: "exploded" is not one of'),
        (
            lambda e: e["data"].update(surprise=1),
            "data: Additional properties are not allowed ('surprise' was unexpected)",
        ),
    ],
)
def test_invalid_vm_samples_are_refused_with_the_reason(mutate, reason):
    good, bad = vm_sample("vm-good"), vm_sample("vm-bad")
    mutate(bad)
    accepted, rejected = split_valid(encode_batch([good, bad]))
    assert accepted == [good]
    assert [(r.index, r.event_id) for r in rejected] == [(1, bad["id"])]
    assert reason in rejected[0].reason


def test_a_float_xaas_quantity_is_refused():
    event = xaas_usage()
    event["data"]["quantity"] = 12.5
    _, rejected = split_valid(encode_batch([event]))
    assert 'data.quantity: 12.5 is not of type "string"' in rejected[0].reason


def test_a_payload_that_is_not_json_is_one_rejection_keeping_the_bytes():
    accepted, rejected = split_valid(b"{not json")
    assert accepted == []
    assert "payload is not valid JSON" in rejected[0].reason
    assert rejected[0].event == "{not json"


def test_the_dead_letter_record_carries_reason_and_event():
    bad = vm_sample()
    bad["data"]["vcpu"] = "two"
    _, (rejection,) = split_valid(encode_batch([bad]))
    record = orjson.loads(rejection.to_json())
    assert record["event"] == bad
    assert record["event_id"] == bad["id"]
    assert 'data.vcpu: "two" is not of type "integer"' in record["reason"]
