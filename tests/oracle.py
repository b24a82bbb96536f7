"""Ground truth for the integration tests, worked out independently of the pipeline's code.

It prices each event with exact fractions straight from the price book file, so a mistake in
metering or rating shows up as a difference rather than being repeated here.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from pathlib import Path

import yaml

CENT = Decimal("0.01")
VDC_FIGURE = {"allocation_pool": "allocated", "reservation_pool": "reserved", "pay_as_you_go": "used"}


def list_prices(path: Path = Path("pipeline/price_book.yaml")) -> dict[tuple[str, str], Fraction]:
    book = yaml.safe_load(path.read_text())
    return {(p["meter"], p.get("dimension", "*")): Fraction(p["unit_price"]) for p in book["prices"]}


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
    return [("xaas_units", data["sku"], Fraction(data["quantity"]))]


def expected_amounts(events: list[dict]) -> dict[str, Fraction]:
    """Exact amount per customer; each event counted once, however often it appears."""
    prices = list_prices()
    unique = {event["id"]: event for event in events}
    totals: dict[str, Fraction] = defaultdict(Fraction)
    for event in unique.values():
        for meter, dimension, quantity in event_quantities(event):
            totals[event["data"]["customer_id"]] += quantity * prices[(meter, dimension)]
    return dict(totals)


def to_cent(amount: Fraction) -> Decimal:
    return (Decimal(amount.numerator) / Decimal(amount.denominator)).quantize(CENT, rounding=ROUND_HALF_EVEN)
