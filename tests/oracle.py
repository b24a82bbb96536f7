"""Ground truth for the integration tests, worked out independently of the pipeline's code.

It prices each event with exact fractions straight from the catalog file, so a mistake in
metering or rating shows up as a difference rather than being repeated here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from pathlib import Path

import yaml

CENT = Decimal("0.01")
VDC_FIGURE = {"allocation_pool": "allocated", "reservation_pool": "reserved", "pay_as_you_go": "used"}


def rating_prices(path: Path = Path("billing/catalog.yaml")) -> Callable[[str, str, str], Fraction]:
    """The per-unit price the stream rates at, per customer: its own plan, its partner's, the provider's.

    Tiered plans rate at their first tier and packages at the block price per unit; the period's
    true price of those is settled at close, not here.
    """
    catalog = yaml.safe_load(path.read_text())
    lists = {price_list["seller_id"]: price_list["plans"] for price_list in catalog["price_lists"]}
    customers = {customer["id"]: customer for customer in catalog["customers"]}

    def unit(plan: dict) -> Fraction:
        if plan["model"] == "package":
            return Fraction(plan["package_price"]) / Fraction(plan["package_size"])
        return Fraction(plan["unit_price"] if plan["model"] == "per_unit" else plan["tiers"][0]["unit_price"])

    def price(customer_id: str, meter: str, dimension: str) -> Fraction:
        customer = customers.get(customer_id, {})
        for plans in (
            customer.get("plans", []),
            lists.get(customer.get("partner_id", ""), []),
            lists[catalog["provider"]["id"]],
        ):
            for wanted in (dimension, "*"):
                found = [p for p in plans if p["meter"] == meter and p.get("dimension", "*") == wanted]
                if found:
                    return unit(found[-1])
        raise KeyError((customer_id, meter, dimension))

    return price


def event_quantities(event: dict) -> list[tuple[str, str, Fraction]]:
    data, kind = event["data"], event["type"]
    hours = Fraction(data["interval_s"], 3600)
    if kind == "vm.sample":
        running = data["power_state"] == "running"
        rows = [
            ("net_rx_gb", "*", Fraction(data["net_rx_bytes"], 10**9)),
            ("net_tx_gb", "*", Fraction(data["net_tx_bytes"], 10**9)),
        ]
        if running:
            rows += [
                ("vcpu_hours", "*", data["vcpu"] * hours),
                ("ram_gib_hours", "*", Fraction(data["ram_mb"], 1024) * hours),
            ]
        rows += [("disk_gib_hours", d["tier"], d["size_gib"] * hours) for d in data["disks"]]
        return rows
    if kind == "vdc.allocation":
        figure = VDC_FIGURE[data["allocation_model"]]
        return [
            ("vdc_cpu_ghz_hours", "*", Fraction(data["cpu_mhz"][figure], 1000) * hours),
            ("vdc_ram_gib_hours", "*", Fraction(data["ram_mb"][figure], 1024) * hours),
            ("vdc_storage_gib_hours", "*", data["storage_gib"][figure] * hours),
        ]
    kind = xaas_aggregations().get(data["sku"], "counter")
    quantity = Fraction(data["quantity"])
    if kind == "gauge":
        return [("xaas_unit_hours", data["sku"], quantity * hours)]
    return [(XAAS_METERS[kind], data["sku"], quantity)]


XAAS_METERS = {"counter": "xaas_units", "peak": "xaas_peak_units", "latest": "xaas_latest_units"}
LEVELS = {"xaas_peak_units", "xaas_latest_units"}
"""Priced at close on the period's peak or last level: their rows carry no amount live."""


def xaas_aggregations(path: Path = Path("billing/catalog.yaml")) -> dict[str, str]:
    """How each XaaS sku of the demo catalog aggregates, as its product declares."""
    products = yaml.safe_load(path.read_text())["products"]
    return {product["id"]: product["aggregation"] for product in products if "aggregation" in product}


def expected_amounts(events: list[dict]) -> dict[str, Fraction]:
    """Exact amount per customer; each event counted once, however often it appears."""
    price = rating_prices()
    unique = {event["id"]: event for event in events}
    totals: dict[str, Fraction] = defaultdict(Fraction)
    for event in unique.values():
        for meter, dimension, quantity in event_quantities(event):
            if meter in LEVELS:
                continue
            customer_id = event["data"]["customer_id"]
            totals[customer_id] += quantity * price(customer_id, meter, dimension)
    return dict(totals)


def to_cent(amount: Fraction) -> Decimal:
    return (Decimal(amount.numerator) / Decimal(amount.denominator)).quantize(CENT, rounding=ROUND_HALF_UP)
