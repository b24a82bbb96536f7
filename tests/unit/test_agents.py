"""Collectors and the spool, without a broker."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agents.simulated import FleetSpec, SimulatedFleet
from agents.spool import SUFFIX, Spool
from schemas.events import encode_batch
from schemas.intake import split_message

AT = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
SMALL = FleetSpec(seed=7, customers=5, hypervisors=2, vms_per_hypervisor=3, vdcs=2, xaas_items=3)


def test_spool_replays_in_order_and_forgets_acknowledged_batches(tmp_path):
    spool = Spool(tmp_path)
    first, second, third = (spool.append(b"hv-1", f"batch {n}".encode()) for n in range(3))
    spool.ack(second.seq)
    assert [(b.key, b.payload) for b in spool.pending()] == [(b"hv-1", b"batch 0"), (b"hv-1", b"batch 2")]
    assert first.seq < third.seq


def test_a_reopened_spool_keeps_its_batches_and_numbering(tmp_path):
    Spool(tmp_path).append(b"k", b"left behind by a killed agent")
    (tmp_path / "00000000000000000099.tmp").write_bytes(b"half-written")
    reopened = Spool(tmp_path)
    assert [b.payload for b in reopened.pending()] == [b"left behind by a killed agent"]
    assert reopened.append(b"k", b"next").seq == 2
    assert not list(tmp_path.glob("*.tmp"))


def test_the_simulated_fleet_is_deterministic_and_valid():
    one, two = SimulatedFleet(SMALL).collect(AT), SimulatedFleet(SMALL).collect(AT)
    assert one == two
    events = [event for batch in one.values() for event in batch]
    checked = split_message(encode_batch(events))
    assert checked.rejected == []
    assert len(checked.events) == 2 * 3 + 2 + 3
    assert len({event["id"] for event in events}) == len(events)


def test_each_tick_is_a_new_sample_with_a_new_id():
    fleet = SimulatedFleet(SMALL)
    now = {e["id"] for batch in fleet.collect(AT).values() for e in batch}
    later = {e["id"] for batch in fleet.collect(AT + timedelta(minutes=5)).values() for e in batch}
    assert not now & later


HOST_XML = """<node>
  <cpu><mhz>2400</mhz><nodes>1</nodes><sockets>1</sockets><cores>4</cores><threads>1</threads></cpu>
  <memory>16777216</memory>
  {domains}
</node>"""

DOMAIN_XML = """<domain type="test">
  <name>{name}</name><uuid>{uuid}</uuid>
  {metadata}
  <memory unit="MiB">{ram_mb}</memory><currentMemory unit="MiB">{ram_mb}</currentMemory>
  <vcpu>{vcpu}</vcpu><os><type arch="x86_64">hvm</type></os>
  <devices>
    <disk type="file" device="disk"><source file="/images/{name}.qcow2"/><target dev="vda" bus="virtio"/></disk>
    <interface type="network"><mac address="52:54:00:00:00:0{n}"/><source network="default"/></interface>
  </devices>
</domain>"""

BILLING = (
    '<metadata><b:billing xmlns:b="https://meterline.io/libvirt/1" customer="{customer}">'
    '<disk dev="vda" tier="ssd"/></b:billing></metadata>'
)


@pytest.fixture
def libvirt_host(tmp_path: Path) -> str:
    pytest.importorskip("libvirt")

    def domain(name: str, n: int, ram_mb: int, vcpu: int, customer: str | None) -> str:
        metadata = BILLING.format(customer=customer) if customer else ""
        uuid = f"6695eb01-f6a4-8304-79aa-97f2502e193{n}"
        return DOMAIN_XML.format(name=name, uuid=uuid, ram_mb=ram_mb, vcpu=vcpu, n=n, metadata=metadata)

    domains = [
        domain("web-01", 1, 4096, 2, "cust-00001"),
        domain("db-01", 2, 8192, 4, "cust-00002"),
        domain("unbilled", 3, 1024, 1, None),
    ]
    path = tmp_path / "host.xml"
    path.write_text(HOST_XML.format(domains="\n".join(domains)))
    return f"test://{path}"


def test_libvirt_collector_reports_billed_vms_with_their_owner_and_tiers(libvirt_host, tmp_path):
    from agents.libvirt_collector import LibvirtCollector

    collector = LibvirtCollector(libvirt_host, tmp_path / "counters.json", interval_s=300)
    (events,) = collector.collect(AT).values()
    checked = split_message(encode_batch(events))
    assert checked.rejected == []
    by_name = {e["data"]["resource_name"]: e["data"] for e in events}
    assert set(by_name) == {"web-01", "db-01"}
    web = by_name["web-01"]
    assert (web["customer_id"], web["vcpu"], web["ram_mb"], web["power_state"]) == ("cust-00001", 2, 4096, "running")
    assert [(d["device"], d["tier"]) for d in web["disks"]] == [("vda", "ssd")]
    assert web["net_rx_bytes"] == 0, "the first reading has no baseline, so no traffic is invented"


def test_libvirt_counter_baseline_survives_a_restart(libvirt_host, tmp_path):
    from agents.libvirt_collector import LibvirtCollector

    state = tmp_path / "counters.json"
    first = LibvirtCollector(libvirt_host, state)
    first.collect(AT)
    first.spooled()
    saved = json.loads(state.read_text())
    time.sleep(0.01)
    assert set(saved) == {"6695eb01-f6a4-8304-79aa-97f2502e1931", "6695eb01-f6a4-8304-79aa-97f2502e1932"}
    restarted = LibvirtCollector(libvirt_host, state)
    (events,) = restarted.collect(AT + timedelta(minutes=5)).values()
    for event in events:
        # libvirt's test driver advances CPU time with the wall clock: the increase since the
        # saved reading is small and positive, where a lost baseline would report 0
        assert 0 < event["data"]["cpu_time_s"] < 60


def test_a_group_is_one_file_removed_once_all_its_batches_are_acknowledged(tmp_path):
    spool = Spool(tmp_path)
    first, second = spool.append_group([(b"hv-1", b"one"), (b"hv-2", b"two")])
    assert len(list(tmp_path.iterdir())) == 1 and len(spool) == 2
    spool.ack(first.seq)
    assert [b.payload for b in Spool(tmp_path).pending()] == [b"one", b"two"], "a crash replays the whole group"
    assert [b.payload for b in spool.pending()] == [b"two"]
    spool.ack(second.seq)
    assert not list(tmp_path.glob(f"*{SUFFIX}")) and len(spool) == 0


def test_numbers_are_never_given_twice_even_once_every_batch_is_stored(tmp_path):
    """Completeness reads a number missing between stored ones as a lost message: a restarted
    agent with an empty spool must go on from its last number, not start again at 1."""
    spool = Spool(tmp_path)
    old, newer = spool.append(b"k", b"one"), spool.append(b"k", b"two")
    spool.ack(newer.seq)  # the newest file goes first: the older one alone would say 2 comes next
    reopened = Spool(tmp_path)
    assert [batch.seq for batch in reopened.pending()] == [1]
    third = reopened.append(b"k", b"three")
    assert third.seq == 3
    reopened.ack(old.seq)
    reopened.ack(third.seq)
    assert Spool(tmp_path).append(b"k", b"four").seq == 4, "an empty spool goes on from 3"


def test_the_spool_counts_the_bytes_it_holds(tmp_path):
    spool = Spool(tmp_path)
    batch = spool.append(b"key", b"x" * 1000)
    assert spool.size_bytes == 16 + 3 + 1000, "a header of 16 bytes, the key and the payload"
    spool.ack(batch.seq)
    assert spool.size_bytes == 0


def test_a_batch_left_by_an_older_agent_is_still_replayed(tmp_path):
    (tmp_path / f"{7:020d}.batch").write_bytes(len(b"hv").to_bytes(4, "big") + b"hv" + b"payload")
    spool = Spool(tmp_path)
    assert [(b.seq, b.key, b.payload) for b in spool.pending()] == [(7, b"hv", b"payload")]
    assert spool.append(b"k", b"next").seq == 8
    spool.ack(7)
    assert [b.seq for b in spool.pending()] == [8]


def test_the_agent_reports_its_ticks_a_line_at_a_time_and_warns_of_batches_left_waiting(caplog):
    from agents.main import TickReport

    at = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
    quiet = TickReport(every_s=3600)
    with caplog.at_level("INFO", logger="meterline.agent"):
        for n in range(10):
            quiet.tick(at + timedelta(minutes=5 * n), 100, waiting=0)
    assert len(caplog.records) == 1, "the first tick, then none: an accelerated replay ticks twice a second"
    caplog.clear()

    chatty = TickReport(every_s=0)
    with caplog.at_level("INFO", logger="meterline.agent"):
        chatty.tick(at, 100, waiting=0)
        chatty.tick(at, 100, waiting=22)
    lines = [record.getMessage() for record in caplog.records]
    assert lines[0].startswith("sampled 1 times up to 2026-11-02T10:00:00+00:00: 100 samples")
    assert [line for line in lines if "22 batches of earlier ticks" in line]
    assert len(lines) == 3, "no warning while every earlier batch was taken"
