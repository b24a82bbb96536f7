"""Events for tests, built the way collectors build them (and gateways' webhooks)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
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
    sku: str = "restore_gb",
    quantity: str = "12.5",
    customer_id: str = "cust-1",
    at: datetime = AT,
    resource_id: str = "bk-1",
    unit: str = "GB",
) -> Event:
    return usage_event(
        EventType.XAAS_USAGE,
        "test://xaas",
        at,
        {
            "customer_id": customer_id,
            "resource_id": resource_id,
            "interval_s": 3600,
            "sku": sku,
            "quantity": quantity,
            "unit": unit,
        },
    )


FROM = "2020-01-01T00:00:00Z"


def catalog_document() -> dict[str, Any]:
    """A small catalog: a direct customer, a partner and its customer, prices for every VM meter."""
    return {
        "currency": "EUR",
        "provider": {"id": "acme", "name": "Acme Cloud", "invoice_prefix": "ACME"},
        "partners": [
            {"id": "north", "name": "North IT", "invoice_prefix": "NTH", "discount_percent": "20", "jurisdiction": "DE"}
        ],
        "tax_rates": [
            {"jurisdiction": "FR", "rate_percent": "20"},
            {"jurisdiction": "DE", "rate_percent": "19"},
        ],
        "products": [{"id": "support", "name": "Support"}],
        "price_lists": [
            {
                "seller_id": "acme",
                "fees": [{"product_id": "support", "amount": "30.00", "setup_fee": "100", "effective_from": FROM}],
                "plans": [
                    {"meter": "vcpu_hours", "model": "per_unit", "unit_price": "0.025", "effective_from": FROM},
                    {"meter": "ram_gib_hours", "model": "per_unit", "unit_price": "0.004", "effective_from": FROM},
                    {"meter": "disk_gib_hours", "model": "per_unit", "unit_price": "0.0002", "effective_from": FROM},
                    {"meter": "net_rx_gb", "model": "per_unit", "unit_price": "0", "effective_from": FROM},
                    {
                        "meter": "xaas_units",
                        "dimension": "restore_gb",
                        "model": "per_unit",
                        "unit_price": "0.045",
                        "effective_from": FROM,
                    },
                    {
                        "meter": "net_tx_gb",
                        "model": "graduated",
                        "effective_from": FROM,
                        "tiers": [{"up_to": "1000", "unit_price": "0.01"}, {"unit_price": "0.005"}],
                    },
                ],
            },
            {
                "seller_id": "north",
                "plans": [{"meter": "vcpu_hours", "model": "per_unit", "unit_price": "0.03", "effective_from": FROM}],
            },
        ],
        "customers": [
            {"id": "direct", "name": "Direct SAS", "discount_percent": "10"},
            {"id": "resold", "name": "Resold GmbH", "partner_id": "north", "jurisdiction": "DE"},
        ],
        "subscriptions": [
            {"id": "s1", "customer_id": "direct", "product_id": "support", "start": "2026-11-10"},
            {"id": "s2", "customer_id": "resold", "product_id": "support", "start": "2025-01-01"},
        ],
        "one_time_charges": [
            {"id": "o1", "customer_id": "direct", "description": "Migration", "amount": "480", "day": "2026-11-15"},
            {"id": "o2", "customer_id": "direct", "description": "Old", "amount": "1", "day": "2026-10-31"},
        ],
    }


def stripe_webhook(secret: str, event: dict[str, Any], signed_at: int | None = None) -> tuple[bytes, dict[str, str]]:
    """A Stripe event as its webhook carries it: the body, and the header signing it with
    ``secret`` (HMAC-SHA256 of "<timestamp>.<body>", Stripe's documented scheme)."""
    body = json.dumps({"object": "event", "livemode": False, "api_version": "2026-10-28", **event}).encode()
    timestamp = int(time.time()) if signed_at is None else signed_at
    signature = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return body, {"Stripe-Signature": f"t={timestamp},v1={signature}", "Content-Type": "application/json"}


def stripe_event(event_id: str, kind: str, thing: dict[str, Any], created: int = 1_790_000_000) -> dict[str, Any]:
    return {"id": event_id, "type": kind, "created": created, "data": {"object": thing}}
