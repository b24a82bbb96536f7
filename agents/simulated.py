"""A simulated provider: hypervisors with VMs, vDCs and XaaS items for many customers.

Deterministic from its seed, so tests and benchmarks can replay the same fleet and compare
the pipeline's figures with what the fleet emitted. Usage varies per tick in a way that is
cheap to compute (no random draw per sample), keeping the generator far faster than the
pipeline it feeds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agents.cloudevents import usage_event
from schemas.events import Event, EventType

VCPU_CHOICES = (1, 2, 2, 4, 4, 8, 16)
RAM_MB_CHOICES = (2048, 4096, 8192, 16384, 32768)
DISK_TIERS = ("ssd", "hdd", "nvme")
VDC_MODELS = ("allocation_pool", "reservation_pool", "pay_as_you_go")
XAAS_SKUS = {
    "backup_gb": ("GB", 50, 800),
    "object_storage_gb": ("GB", 100, 4000),
    "dbaas_instance": ("instance", 1, 3),
    "windows_server_licence": ("licence", 1, 12),
    "restore_gb": ("GB", 1, 40),
}
"""Each sku's unit and the range of its level: stocks held (GB, instances, licences), and
restores, a counter: the GB restored over the interval, a restore a day."""
SAMPLES_PER_RESTORE = 288


@dataclass(frozen=True)
class FleetSpec:
    seed: int = 42
    customers: int = 200
    hypervisors: int = 20
    vms_per_hypervisor: int = 50
    vdcs: int = 40
    xaas_items: int = 100
    interval_s: int = 300


@dataclass(frozen=True)
class SimulatedVm:
    resource_id: str
    customer_id: str
    hypervisor: str
    vcpu: int
    ram_mb: int
    disks: tuple[tuple[str, str, int], ...]
    running: bool


@dataclass
class SimulatedFleet:
    """Every simulated resource; ``collect`` samples them all at one instant."""

    spec: FleetSpec = field(default_factory=FleetSpec)
    vms: list[SimulatedVm] = field(init=False)
    vdcs: list[dict[str, Any]] = field(init=False)
    xaas: list[dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        draw = random.Random(self.spec.seed)
        customers = [f"cust-{n:05d}" for n in range(1, self.spec.customers + 1)]
        self.vms = [
            self._vm(draw, customers, host, slot)
            for host in range(self.spec.hypervisors)
            for slot in range(self.spec.vms_per_hypervisor)
        ]
        self.vdcs = [
            {
                "resource_id": f"vdc-{n:04d}",
                "customer_id": draw.choice(customers),
                "model": draw.choice(VDC_MODELS),
                "cpu_mhz": draw.choice((10_000, 20_000, 40_000)),
                "ram_mb": draw.choice((32_768, 65_536)),
                "storage_gib": draw.choice((500, 1000, 2000)),
            }
            for n in range(self.spec.vdcs)
        ]
        self.xaas = [
            {
                "resource_id": f"xaas-{n:04d}",
                "customer_id": draw.choice(customers),
                "sku": (sku := draw.choice(list(XAAS_SKUS))),
                "base": draw.randint(*XAAS_SKUS[sku][1:]),
            }
            for n in range(self.spec.xaas_items)
        ]

    @staticmethod
    def _vm(draw: random.Random, customers: list[str], host: int, slot: int) -> SimulatedVm:
        disks = tuple(
            (f"vd{chr(ord('a') + n)}", draw.choice(DISK_TIERS), draw.choice((20, 40, 100, 250)))
            for n in range(draw.randint(1, 3))
        )
        return SimulatedVm(
            resource_id=f"vm-{host:03d}-{slot:04d}",
            customer_id=draw.choice(customers),
            hypervisor=f"hv-{host:03d}",
            vcpu=draw.choice(VCPU_CHOICES),
            ram_mb=draw.choice(RAM_MB_CHOICES),
            disks=disks,
            running=draw.random() > 0.1,
        )

    @property
    def sources(self) -> list[str]:
        return sorted({vm.hypervisor for vm in self.vms}) + ["vcd", "xaas"]

    def collect(self, at: datetime) -> dict[str, list[Event]]:
        """Every resource's sample for the interval ending at ``at``, grouped by source."""
        tick = int(at.timestamp()) // self.spec.interval_s
        batches: dict[str, list[Event]] = {source: [] for source in self.sources}
        for index, vm in enumerate(self.vms):
            batches[vm.hypervisor].append(self._vm_sample(vm, index, tick, at))
        batches["vcd"] = [self._vdc_sample(vdc, at) for vdc in self.vdcs]
        batches["xaas"] = [self._xaas_sample(item, index, tick, at) for index, item in enumerate(self.xaas)]
        return batches

    def spooled(self) -> None:
        """The fleet keeps no counters between samples: nothing to move on."""

    def _vm_sample(self, vm: SimulatedVm, index: int, tick: int, at: datetime) -> Event:
        wiggle = (tick * 7919 + index * 104_729) % 1000
        busy = vm.running
        data = {
            "customer_id": vm.customer_id,
            "resource_id": vm.resource_id,
            "hypervisor": vm.hypervisor,
            "interval_s": self.spec.interval_s,
            "power_state": "running" if busy else "stopped",
            "vcpu": vm.vcpu,
            "ram_mb": vm.ram_mb,
            "disks": [{"device": device, "tier": tier, "size_gib": size} for device, tier, size in vm.disks],
            "cpu_time_s": round(vm.vcpu * self.spec.interval_s * wiggle / 1000, 3) if busy else 0,
            "net_rx_bytes": wiggle * 1_048_576 if busy else 0,
            "net_tx_bytes": wiggle * 524_288 if busy else 0,
        }
        return usage_event(EventType.VM_SAMPLE, f"sim://{vm.hypervisor}", at, data)

    def _vdc_sample(self, vdc: dict[str, Any], at: datetime) -> Event:
        def amounts(allocated: int) -> dict[str, int]:
            return {"allocated": allocated, "reserved": allocated // 2, "used": allocated // 3}

        data = {
            "customer_id": vdc["customer_id"],
            "resource_id": vdc["resource_id"],
            "interval_s": self.spec.interval_s,
            "allocation_model": vdc["model"],
            "cpu_mhz": amounts(vdc["cpu_mhz"]),
            "ram_mb": amounts(vdc["ram_mb"]),
            "storage_gib": amounts(vdc["storage_gib"]),
        }
        return usage_event(EventType.VDC_ALLOCATION, "sim://vcd", at, data)

    def _xaas_sample(self, item: dict[str, Any], index: int, tick: int, at: datetime) -> Event:
        """A stock drifts by a few units around its level; a licence count by one either way."""
        unit, low, high = XAAS_SKUS[item["sku"]]
        drift = (tick + index) % 3 - 1 if unit in ("instance", "licence") else (tick + index) % 7 / 4
        quantity = min(max(item["base"] + drift, low), high)
        if item["sku"] == "restore_gb":
            quantity = item["base"] if (tick + index) % SAMPLES_PER_RESTORE == 0 else 0
        data = {
            "customer_id": item["customer_id"],
            "resource_id": item["resource_id"],
            "interval_s": self.spec.interval_s,
            "sku": item["sku"],
            "quantity": f"{quantity:g}" if unit in ("instance", "licence") else f"{quantity:.2f}",
            "unit": unit,
        }
        return usage_event(EventType.XAAS_USAGE, "sim://xaas", at, data)
