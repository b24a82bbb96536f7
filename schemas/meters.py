"""Billable meters: the closed list of what meterline counts, each with its unit.

A meter also says how a period's quantity is made of its samples (``Meter.aggregation``): most
add up what each sample contributed (vCPU-hours, bytes); an XaaS sku declares in the catalog
whether it reports a counter (increments, summed), a stock billed over time (GB stored, instances:
summed as GB-hours, instance-hours, prorated to the second), the peak level, or the latest one.
"""

from __future__ import annotations

from enum import StrEnum


class Meter(StrEnum):
    VCPU_HOURS = "vcpu_hours"
    RAM_GIB_HOURS = "ram_gib_hours"
    DISK_GIB_HOURS = "disk_gib_hours"
    NET_RX_GB = "net_rx_gb"
    NET_TX_GB = "net_tx_gb"
    VDC_CPU_GHZ_HOURS = "vdc_cpu_ghz_hours"
    VDC_RAM_GIB_HOURS = "vdc_ram_gib_hours"
    VDC_STORAGE_GIB_HOURS = "vdc_storage_gib_hours"
    XAAS_UNITS = "xaas_units"
    XAAS_UNIT_HOURS = "xaas_unit_hours"
    XAAS_PEAK_UNITS = "xaas_peak_units"
    XAAS_LATEST_UNITS = "xaas_latest_units"

    @property
    def unit(self) -> str:
        return _UNITS[self]

    @property
    def label(self) -> str:
        """What an invoice calls it."""
        return _LABELS[self]

    @property
    def family(self) -> str:
        """The product family an invoice groups the meter's lines under."""
        if self.value.startswith("vdc_"):
            return "Virtual datacenters"
        return "Services" if self.is_xaas else "Virtual machines"

    @property
    def aggregation(self) -> PeriodAggregation:
        return _LEVELS.get(self, PeriodAggregation.SUM)

    @property
    def is_xaas(self) -> bool:
        return self in XAAS_METERS.values()


class PeriodAggregation(StrEnum):
    """How a period's quantity is made of its samples: summed, or per resource its highest or
    its latest level (then summed over the customer's resources)."""

    SUM = "sum"
    PEAK = "peak"
    LATEST = "latest"

    @property
    def is_level(self) -> bool:
        """Levels are priced on the period's figure only: a sample alone is worth nothing yet."""
        return self is not PeriodAggregation.SUM


class XaasAggregation(StrEnum):
    """What an XaaS sku's reported quantity is, as its catalog product declares."""

    COUNTER = "counter"
    """An increment over the sample's interval (requests, GB transferred): summed."""
    GAUGE = "gauge"
    """A stock held through the interval (GB stored, instances): billed per unit-hour."""
    PEAK = "peak"
    """A level whose highest value in the period is billed (concurrent licences)."""
    LATEST = "latest"
    """A level whose last value in the period is billed (seats at month end)."""

    @property
    def meter(self) -> Meter:
        return XAAS_METERS[self]


_UNITS = {
    Meter.VCPU_HOURS: "vCPU-hour",
    Meter.RAM_GIB_HOURS: "GiB-hour",
    Meter.DISK_GIB_HOURS: "GiB-hour",
    Meter.NET_RX_GB: "GB",
    Meter.NET_TX_GB: "GB",
    Meter.VDC_CPU_GHZ_HOURS: "GHz-hour",
    Meter.VDC_RAM_GIB_HOURS: "GiB-hour",
    Meter.VDC_STORAGE_GIB_HOURS: "GiB-hour",
    Meter.XAAS_UNITS: "unit",
    Meter.XAAS_UNIT_HOURS: "unit-hour",
    Meter.XAAS_PEAK_UNITS: "unit",
    Meter.XAAS_LATEST_UNITS: "unit",
}
_LABELS = {
    Meter.VCPU_HOURS: "Virtual CPU",
    Meter.RAM_GIB_HOURS: "Memory",
    Meter.DISK_GIB_HOURS: "Disk storage",
    Meter.NET_RX_GB: "Inbound traffic",
    Meter.NET_TX_GB: "Outbound traffic",
    Meter.VDC_CPU_GHZ_HOURS: "Virtual datacenter CPU",
    Meter.VDC_RAM_GIB_HOURS: "Virtual datacenter memory",
    Meter.VDC_STORAGE_GIB_HOURS: "Virtual datacenter storage",
    Meter.XAAS_UNITS: "Service usage",
    Meter.XAAS_UNIT_HOURS: "Service usage",
    Meter.XAAS_PEAK_UNITS: "Service usage",
    Meter.XAAS_LATEST_UNITS: "Service usage",
}
_LEVELS = {Meter.XAAS_PEAK_UNITS: PeriodAggregation.PEAK, Meter.XAAS_LATEST_UNITS: PeriodAggregation.LATEST}
XAAS_METERS = {
    XaasAggregation.COUNTER: Meter.XAAS_UNITS,
    XaasAggregation.GAUGE: Meter.XAAS_UNIT_HOURS,
    XaasAggregation.PEAK: Meter.XAAS_PEAK_UNITS,
    XaasAggregation.LATEST: Meter.XAAS_LATEST_UNITS,
}
