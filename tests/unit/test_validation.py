"""Every refused event carries a reason a person can act on; nothing valid is refused."""

from __future__ import annotations

import orjson
import pytest

from schemas.events import encode_batch
from schemas.intake import split_message
from schemas.records import message_id
from tests.factories import vdc_allocation, vm_sample, xaas_usage


def test_valid_events_of_every_type_pass():
    events = [vm_sample(), vdc_allocation(), xaas_usage()]
    checked = split_message(encode_batch(events))
    assert [e.id for e in checked.events] == [e["id"] for e in events]
    assert checked.rejected == []


def test_a_single_event_message_is_a_batch_of_one():
    checked = split_message(orjson.dumps(vm_sample()))
    assert len(checked.events) == 1


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda e: e["data"].update(vcpu=-1), "data.vcpu: Expected `int` >= 0"),
        (lambda e: e["data"].pop("customer_id"), "data: Object missing required field `customer_id`"),
        (lambda e: e.update(type="vm.unknown"), "type: Invalid value 'vm.unknown'"),
        (lambda e: e.update(time="yesterday"), "time: Invalid RFC3339 encoded datetime"),
        (lambda e: e.update(time="2026-13-45T10:00:00Z"), "time: Invalid RFC3339 encoded datetime"),
        (lambda e: e["data"].update(power_state="exploded"), "data.power_state: Invalid enum value 'exploded'"),
        (lambda e: e["data"].update(hypervisor=None), "data.hypervisor: Expected `str`, got `null`"),
        (lambda e: e.update(time="2026-11-02T10:00:00"), "time: Expected `datetime` with a timezone component"),
    ],
)
def test_invalid_vm_samples_are_refused_with_the_reason(mutate, reason):
    good, bad = vm_sample("vm-good"), vm_sample("vm-bad")
    mutate(bad)
    checked = split_message(encode_batch([good, bad]))
    assert [e.id for e in checked.events] == [good["id"]]
    assert [(r.index, r.event_id) for r in checked.rejected] == [(1, bad["id"])]
    assert reason in checked.rejected[0].reason


def test_unknown_fields_are_ignored_so_agents_can_upgrade_first():
    event = vm_sample()
    event["data"]["gpu_count"] = 2
    event["traceparent"] = "00-abc-01"
    checked = split_message(encode_batch([event]))
    assert ([e.id for e in checked.events], checked.rejected) == ([event["id"]], [])


def test_a_float_xaas_quantity_is_refused():
    event = xaas_usage()
    event["data"]["quantity"] = 12.5
    checked = split_message(encode_batch([event]))
    assert "data.quantity: Expected `str`, got `float`" in checked.rejected[0].reason


def test_a_payload_that_is_not_json_is_one_rejection_keeping_the_bytes():
    checked = split_message(b"{not json")
    assert checked.events == []
    assert "payload is not valid JSON" in checked.rejected[0].reason
    assert checked.rejected[0].event == "{not json"


def test_the_dead_letter_record_carries_reason_and_event():
    bad = vm_sample()
    bad["data"]["vcpu"] = "two"
    (rejection,) = split_message(encode_batch([bad])).rejected
    record = orjson.loads(rejection.to_json())
    assert record["event"] == bad
    assert record["event_id"] == bad["id"]
    assert "data.vcpu: Expected `int`, got `str`" in record["reason"]


def test_each_valid_event_keeps_its_json_exactly_as_received():
    payload = b'[ {"specversion":"1.0", "id":"abcdefgh-1","source":"s","type":"xaas.usage",' + (
        b'"time":"2026-11-02T10:00:00+01:00","data":{"customer_id":"c","resource_id":"r","interval_s":60,'
        b'"sku":"backup_gb_month","quantity":"1","unit":"GB","note":"kept"}} ]'
    )
    checked = split_message(payload)
    assert checked.raw(0) == payload[2:-2]
    assert (checked.message_ids, checked.offsets) == ([message_id(payload)], [2])
    assert checked.events[0].time.utcoffset().total_seconds() == 3600


def test_each_event_is_found_again_in_its_message_whatever_the_spacing():
    first, second = (orjson.dumps(event, option=orjson.OPT_INDENT_2) for event in (vm_sample("a"), xaas_usage()))
    payload = b"[\n  " + first + b" ,\n\t" + second + b"\n]\n"
    checked = split_message(payload)
    assert [checked.raw(0), checked.raw(1)] == [first, second]
    bad = payload.replace(b'"vcpu": 2', b'"vcpu": -2')
    assert bad != payload
    checked = split_message(bad)
    assert len(checked.events) == 1 and checked.raw(0) == second


def test_a_single_event_message_is_kept_whole_with_its_spacing():
    payload = b"\n " + orjson.dumps(vm_sample()) + b" \n"
    assert split_message(payload).raw(0) == payload


def test_events_of_a_compact_batch_are_found_where_they_are():
    events = [vm_sample("a"), vdc_allocation(), xaas_usage()]
    payload = encode_batch(events)
    checked = split_message(payload)
    assert [orjson.loads(checked.raw(n)) for n in range(3)] == events


def test_a_disk_listed_twice_is_refused_and_disks_without_a_device_are_not_compared():
    """Two 100 GiB entries for vda were billed as 200 GiB."""
    twice, unnamed = vm_sample("vm-twice"), vm_sample("vm-unnamed")
    twice["data"]["disks"] = [{"tier": "ssd", "size_gib": 100, "device": "vda"}] * 2
    unnamed["data"]["disks"] = [{"tier": "ssd", "size_gib": 100}] * 2
    checked = split_message(encode_batch([twice, unnamed]))
    assert [e.id for e in checked.events] == [unnamed["id"]]
    (rejection,) = checked.rejected
    assert (rejection.event_id, rejection.reason) == (twice["id"], "data.disks: device 'vda' is listed more than once")


@pytest.mark.parametrize("tier", ["SSD", "ssd\n", "fast-disk", "x" * 33, ""])
def test_a_disk_tier_outside_its_pattern_is_refused_with_the_path(tier):
    good, bad = vm_sample("vm-good"), vm_sample("vm-bad")
    bad["data"]["disks"] = [{"tier": "ssd", "size_gib": 10}, {"tier": tier, "size_gib": 10}]
    checked = split_message(encode_batch([good, bad]))
    assert [e.id for e in checked.events] == [good["id"]]
    (rejection,) = checked.rejected
    assert rejection.event_id == bad["id"]
    assert rejection.reason.startswith("data.disks[1].tier: Expected `str`"), rejection.reason


@pytest.mark.parametrize("depth", [1_000, 5_000])
def test_json_nested_deeper_than_any_event_is_refused_not_crashed_on(depth):
    """msgspec gives up on deep nesting with a RecursionError: that is a refused message, with
    the reason, never an exception out of validation (the API answered 500 and a worker died)."""
    for body in (b"[" * depth + b"]" * depth, b"[" + b'{"a":' * depth + b"1" + b"}" * depth + b"]"):
        (rejection,) = split_message(body).rejected
        assert rejection.reason == "payload nests JSON deeper than any event does"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (
            lambda e: e["data"].update(customer_id="cust-00001\r\n"),
            "data.customer_id: 'cust-00001\\r\\n' is not an identifier",
        ),
        (
            lambda e: e["data"].update(customer_id="cust-00001\u0000"),
            "data.customer_id: 'cust-00001\\x00' is not an identifier",
        ),
        (
            lambda e: e["data"].update(customer_id="../cust-00001"),
            "data.customer_id: '../cust-00001' is not an identifier",
        ),
        (
            lambda e: e["data"].update(customer_id="cust-0000\uff11"),
            "data.customer_id: 'cust-0000１' is not an identifier",
        ),
        (
            lambda e: e.update(source="backup/../sim://hv-001"),
            "source: 'backup/../sim://hv-001' is not a source in its normal form",
        ),
        (lambda e: e.update(source="backup//x"), "source: 'backup//x' is not a source in its normal form"),
        (lambda e: e.update(source="backup/\u2024/x"), "source: 'backup/․/x' is not a source"),
        (
            lambda e: e["data"].update(resource_id="vm-1\u202egnp.exe"),
            "data.resource_id: holds the control or formatting character U+202E",
        ),
        (lambda e: e["data"].update(resource_id=" vm-1"), "data.resource_id: starts or ends with white space"),
        (
            lambda e: e["data"].update(resource_name="line\nbreak"),
            "data: holds the control or formatting character U+000A",
        ),
    ],
)
def test_what_names_a_customer_a_source_or_a_resource_is_refused_unless_written_one_way(mutate, reason):
    """Each of these was accepted, stored and rated, and then no query could name it, or it
    passed for a source its key was not bound to."""
    good, bad = vm_sample("vm-good"), vm_sample("vm-bad")
    mutate(bad)
    checked = split_message(encode_batch([good, bad]))
    assert [event.id for event in checked.events] == [good["id"]]
    (rejection,) = checked.rejected
    assert rejection.reason.startswith(reason), rejection.reason
    assert rejection.index == 1


def test_sources_in_their_one_written_form_pass():
    for source in ("libvirt://hv-07", "sim://hv-001", "backup/nightly", "/sensors/tn-1234567", "urn:x:y@z"):
        event = vm_sample()
        event["source"] = source
        assert split_message(encode_batch([event])).rejected == [], source


def test_a_message_that_is_not_utf8_is_refused_whole_with_the_reason():
    payload = encode_batch([vm_sample()]).replace(b"vm-1", b"vm-\xff")
    checked = split_message(payload)
    assert checked.events == []
    assert checked.rejected[0].reason.startswith("payload is not UTF-8, as JSON must be")


def test_a_report_in_another_unit_than_its_skus_is_refused_and_a_unit_never_starts_a_formula():
    """Reports of backup_gb in GB, TB and "+cmd|' /C calc'!A0" were summed into one invoice line
    whose unit was the formula: the catalog declares each sku's unit, and a unit starts with a
    letter or a digit."""
    from pipeline.dedup import RecentEvents
    from pipeline.processing import process_batch
    from tests.unit.test_exactly_once_in_the_stage import BOOK

    in_gb = xaas_usage("backup_gb", "100", resource_id="vault-1", unit="GB")
    in_tb = xaas_usage("backup_gb", "1", resource_id="vault-2", unit="TB")
    outcome = process_batch([encode_batch([in_gb, in_tb])], RecentEvents(), BOOK)
    assert outcome.events["resource_id"].to_list() == ["vault-1"]
    assert [r.reason for r in outcome.rejected] == [
        "data.unit: 'TB' is not the unit of backup_gb, 'GB': report its quantity in it"
    ]
    formula = xaas_usage("restore_gb", "1", unit="+cmd|' /C calc'!A0")
    checked = split_message(encode_batch([formula]))
    assert checked.rejected[0].reason.startswith("data.unit: \"+cmd|' /C calc'!A0\" is not a unit")
