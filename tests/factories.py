"""Events for tests, built the way collectors build them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from agents.cloudevents import usage_event
from schemas.events import Event, EventType

AT = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def vm_sample(resource_id: str = "vm-1", customer_id: str = "cust-1", at: datetime = AT, **data: Any) -> Event:
    fields: dict[str, Any] = {
        "customer_id": customer_id,
        "resource_id": resource_id,
        "interval_s": 300,
        "power_state": "running",
        "vcpu": 2,
        "ram_mb": 4096,
        "disks": [{"device": "vda", "tier": "ssd", "size_gib": 40}],
        "cpu_time_s": 120.5,
        "net_rx_bytes": 0,
        "net_tx_bytes": 2_000_000_000,
    }
    fields.update(data)
    return usage_event(EventType.VM_SAMPLE, "test://hv-1", at, fields)


def vdc_allocation(model: str = "allocation_pool", customer_id: str = "cust-1", at: datetime = AT) -> Event:
    return usage_event(
        EventType.VDC_ALLOCATION,
        "test://vcd",
        at,
        {
            "customer_id": customer_id,
            "resource_id": "vdc-1",
            "interval_s": 3600,
            "allocation_model": model,
            "cpu_mhz": {"allocated": 20_000, "reserved": 10_000, "used": 5_000},
            "ram_mb": {"allocated": 65_536, "reserved": 32_768, "used": 16_384},
            "storage_gib": {"allocated": 1000, "reserved": 500, "used": 250},
        },
    )


def xaas_usage(
    sku: str = "backup_gb_month", quantity: str = "12.5", customer_id: str = "cust-1", at: datetime = AT
) -> Event:
    return usage_event(
        EventType.XAAS_USAGE,
        "test://xaas",
        at,
        {
            "customer_id": customer_id,
            "resource_id": "bk-1",
            "interval_s": 3600,
            "sku": sku,
            "quantity": quantity,
            "unit": "GB",
        },
    )
