"""Billable meters: the closed list of what meterline counts, each with its unit."""

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

    @property
    def unit(self) -> str:
        return _UNITS[self]

    @property
    def label(self) -> str:
        """What an invoice calls it."""
        return _LABELS[self]


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
}
