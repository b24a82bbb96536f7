"""Collect VM usage from a libvirt hypervisor (any libvirt URI; tests use ``test:///``).

Which customer owns a VM, and the storage tier of each disk, come from the domain's
``<metadata>`` element in meterline's namespace::

    <billing:billing xmlns:billing="https://meterline.io/libvirt/1" customer="cust-00001">
      <disk dev="vda" tier="ssd"/>
    </billing:billing>

Counters (CPU time, network bytes) are running totals in libvirt; the collector reports their
increase since its previous reading, which it keeps in a small state file so that a restart
neither loses nor repeats an interval's traffic.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET  # noqa: S405 - parses the local hypervisor's own domain XML
from datetime import datetime
from pathlib import Path
from typing import Any

import libvirt

from agents.cloudevents import usage_event
from schemas.events import Event, EventType

METADATA_NS = "https://meterline.io/libvirt/1"
RUNNING_STATES = {libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED}
BYTES_PER_GIB = 1024**3


class LibvirtCollector:
    def __init__(self, uri: str, state_path: Path, interval_s: int = 300, default_tier: str = "standard") -> None:
        self._connection = libvirt.openReadOnly(uri)
        self.source = f"libvirt://{self._connection.getHostname()}"
        self.interval_s = interval_s
        self._default_tier = default_tier
        self._state_path = state_path
        self._previous: dict[str, dict[str, int]] = json.loads(state_path.read_text()) if state_path.exists() else {}
        self._readings: dict[str, dict[str, int]] = {}

    def collect(self, at: datetime) -> dict[str, list[Event]]:
        events, readings = [], {}
        for domain in self._connection.listAllDomains():
            billing = self._billing(domain)
            if billing is None:
                continue
            sample, counters = self._sample(domain, billing)
            readings[sample["resource_id"]] = counters
            events.append(usage_event(EventType.VM_SAMPLE, self.source, at, sample))
        self._readings = readings
        return {self.source: events}

    def spooled(self) -> None:
        """The last samples are on disk: their counter readings become the next baseline."""
        self._previous = self._readings
        temporary = self._state_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self._readings))
        os.replace(temporary, self._state_path)

    def _sample(self, domain: Any, billing: ET.Element) -> tuple[dict[str, Any], dict[str, int]]:
        state, _max_kib, memory_kib, vcpus, cpu_time_ns = domain.info()
        description = ET.fromstring(domain.XMLDesc())  # noqa: S314 - trusted local XML
        tiers = {disk.get("dev"): disk.get("tier", self._default_tier) for disk in billing.findall("disk")}
        rx, tx = 0, 0
        for target in description.findall("./devices/interface/target"):
            stats = domain.interfaceStats(target.get("dev"))
            rx, tx = rx + stats[0], tx + stats[4]
        counters = {"cpu_time_ns": cpu_time_ns, "rx": rx, "tx": tx}
        resource_id = domain.UUIDString()
        before = self._previous.get(resource_id, counters)
        running = state in RUNNING_STATES
        sample = {
            "customer_id": billing.get("customer"),
            "resource_id": resource_id,
            "resource_name": domain.name(),
            "hypervisor": self.source,
            "interval_s": self.interval_s,
            "power_state": "running" if running else "stopped",
            "vcpu": vcpus,
            "ram_mb": memory_kib // 1024,
            "disks": [self._disk(domain, device, tiers) for device in self._disk_devices(description)],
            "cpu_time_s": max(0, cpu_time_ns - before["cpu_time_ns"]) / 1e9,
            "net_rx_bytes": max(0, rx - before["rx"]),
            "net_tx_bytes": max(0, tx - before["tx"]),
        }
        return sample, counters

    @staticmethod
    def _disk_devices(description: ET.Element) -> list[str]:
        targets = description.findall("./devices/disk[@device='disk']/target")
        return [device for target in targets if (device := target.get("dev"))]

    def _disk(self, domain: Any, device: str, tiers: dict[str | None, str]) -> dict[str, Any]:
        capacity_bytes = domain.blockInfo(device)[0]
        return {
            "device": device,
            "tier": tiers.get(device, self._default_tier),
            "size_gib": capacity_bytes // BYTES_PER_GIB,
        }

    @staticmethod
    def _billing(domain: Any) -> ET.Element | None:
        """The domain's billing metadata, or None for a VM nobody is billed for."""
        try:
            return ET.fromstring(domain.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS))  # noqa: S314
        except libvirt.libvirtError:
            return None
