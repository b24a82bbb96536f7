"""Golden cases: every expected figure is worked out by hand in the docstring."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from billing.catalog import load_catalog
from billing.pricing import Price, PriceBook, price_book
from pipeline.metering import event_columns, measure
from pipeline.rating import rate_quantities
from pipeline.validation import split_message
from schemas.events import encode_batch
from schemas.meters import Meter
from tests.factories import AT, vdc_allocation, vm_sample, xaas_usage

BOOK = price_book(load_catalog(Path("billing/catalog.yaml")))


def measure_events(events: list) -> object:
    return measure(event_columns(split_message(encode_batch(events))))


def rated_by_meter(events: list, book: PriceBook = BOOK) -> dict[tuple[str, str], tuple[Decimal, Decimal]]:
    rated, unpriced = rate_quantities(measure_events(events), book)
    assert not unpriced
    return {(r["meter"], r["dimension"]): (r["quantity"], r["amount"]) for r in rated.iter_rows(named=True)}


def test_running_vm_sample_bills_each_meter():
    """2 vCPU x 300 s = 1/6 vCPU-h x 0.025 = 0.004166666667 (rounded once, at 12 places);
    4096 MiB = 4 GiB x 1/12 h = 1/3 GiB-h x 0.004 = 0.001333333333;
    40 GiB ssd x 1/12 h = 3.333333333333 GiB-h x 0.0002 = 0.000666666667;
    2e9 bytes out = 2 GB x 0.01 = 0.02; nothing received, so no net_rx row."""
    rows = rated_by_meter([vm_sample()])
    assert rows == {
        ("vcpu_hours", ""): (Decimal("0.166666666667"), Decimal("0.004166666667")),
        ("ram_gib_hours", ""): (Decimal("0.333333333333"), Decimal("0.001333333333")),
        ("disk_gib_hours", "ssd"): (Decimal("3.333333333333"), Decimal("0.000666666667")),
        ("net_tx_gb", ""): (Decimal("2"), Decimal("0.02")),
    }


def test_stopped_vm_bills_only_its_disks():
    """A stopped VM holds no CPU or RAM; its 40 GiB of ssd still cost 0.000666666667."""
    rows = rated_by_meter([vm_sample(power_state="stopped", net_tx_bytes=0)])
    assert rows == {("disk_gib_hours", "ssd"): (Decimal("3.333333333333"), Decimal("0.000666666667"))}


def test_disks_of_one_tier_are_summed_and_tiers_priced_apart():
    """ssd 40 + 60 GiB = 100 GiB x 1/12 h = 8.333333333333 GiB-h x 0.0002 = 0.001666666667;
    hdd 120 GiB x 1/12 h = 10 GiB-h x 0.00006 = 0.0006."""
    disks = [
        {"tier": "ssd", "size_gib": 40},
        {"tier": "ssd", "size_gib": 60},
        {"tier": "hdd", "size_gib": 120},
    ]
    rows = rated_by_meter([vm_sample(disks=disks, power_state="stopped", net_tx_bytes=0)])
    assert rows[("disk_gib_hours", "ssd")] == (Decimal("8.333333333333"), Decimal("0.001666666667"))
    assert rows[("disk_gib_hours", "hdd")] == (Decimal("10"), Decimal("0.0006"))


@pytest.mark.parametrize(
    ("model", "ghz_hours", "ram_gib_hours", "storage_gib_hours"),
    [
        ("allocation_pool", "20", "64", "1000"),
        ("reservation_pool", "10", "32", "500"),
        ("pay_as_you_go", "5", "16", "250"),
    ],
)
def test_vdc_bills_the_figure_of_its_allocation_model(model, ghz_hours, ram_gib_hours, storage_gib_hours):
    """One hour of a vDC: allocation pool bills allocated (20 000 MHz = 20 GHz-h), reservation
    pool reserved (10 GHz-h), pay-as-you-go used (5 GHz-h); likewise RAM and storage."""
    rows = rated_by_meter([vdc_allocation(model)])
    assert rows[("vdc_cpu_ghz_hours", model)][0] == Decimal(ghz_hours)
    assert rows[("vdc_ram_gib_hours", model)][0] == Decimal(ram_gib_hours)
    assert rows[("vdc_storage_gib_hours", model)][0] == Decimal(storage_gib_hours)
    assert rows[("vdc_cpu_ghz_hours", model)][1] == Decimal(ghz_hours) * Decimal("0.012")


def test_xaas_quantity_is_taken_as_a_decimal():
    """12.5 GB of backup x 0.045 = 0.5625 exactly: the quantity never passes through a float."""
    assert rated_by_meter([xaas_usage()]) == {("xaas_units", "backup_gb_month"): (Decimal("12.5"), Decimal("0.5625"))}


def _book(*prices: Price) -> PriceBook:
    return PriceBook(currency="EUR", prices=prices)


def test_the_price_in_force_at_the_usage_time_applies():
    """List price 0.03 from January, 0.02 from 1 Nov 10:00: a sample covering 09:55-10:00 is
    rated at 0.03 (1/6 vCPU-h -> 0.005), one covering 10:00-10:05 at 0.02 (-> 0.003333333333)."""
    change = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
    book = _book(
        Price(Meter.VCPU_HOURS, Decimal("0.03"), datetime(2026, 1, 1, tzinfo=UTC)),
        Price(Meter.VCPU_HOURS, Decimal("0.02"), change),
    )
    before = vm_sample(at=change, ram_mb=0, disks=[], net_tx_bytes=0)
    after = vm_sample(at=datetime(2026, 11, 2, 10, 5, tzinfo=UTC), ram_mb=0, disks=[], net_tx_bytes=0)
    rated, _ = rate_quantities(measure_events([before, after]), book)
    amounts = dict(zip(rated["event_id"], rated["amount"], strict=True))
    assert amounts == {before["id"]: Decimal("0.005"), after["id"]: Decimal("0.003333333333")}


def test_customer_price_overrides_the_list_price():
    """cust-1 pays 0.01 per vCPU-h instead of 0.03: 1/6 h x 0.01 = 0.001666666667."""
    since = datetime(2026, 1, 1, tzinfo=UTC)
    book = _book(
        Price(Meter.VCPU_HOURS, Decimal("0.03"), since),
        Price(Meter.VCPU_HOURS, Decimal("0.01"), since, customer_id="cust-1"),
    )
    mine = vm_sample(ram_mb=0, disks=[], net_tx_bytes=0)
    theirs = vm_sample(resource_id="vm-2", customer_id="cust-2", ram_mb=0, disks=[], net_tx_bytes=0)
    rated, _ = rate_quantities(measure_events([mine, theirs]), book)
    amounts = dict(zip(rated["customer_id"], rated["amount"], strict=True))
    assert amounts == {"cust-1": Decimal("0.001666666667"), "cust-2": Decimal("0.005")}


def test_the_most_specific_price_in_force_wins():
    """120 GiB x 1/12 h = 10 GiB-h of disk, priced (per GiB-h) by the most specific entry:
    cust-1 has a price for its ssd (0.5) and one for any tier (0.4); cust-2 has one from
    December only, so in November it pays like cust-3; ssd has a list price (0.2), other
    tiers the meter's list price (0.1)."""
    since, december = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    book = _book(
        Price(Meter.DISK_GIB_HOURS, Decimal("0.1"), since),
        Price(Meter.DISK_GIB_HOURS, Decimal("0.2"), since, dimension="ssd"),
        Price(Meter.DISK_GIB_HOURS, Decimal("0.4"), since, customer_id="cust-1"),
        Price(Meter.DISK_GIB_HOURS, Decimal("0.5"), since, dimension="ssd", customer_id="cust-1"),
        Price(Meter.DISK_GIB_HOURS, Decimal("0.9"), december, customer_id="cust-2"),
    )
    samples = [
        vm_sample(
            resource_id=f"vm-{customer}-{tier}",
            customer_id=customer,
            power_state="stopped",
            net_tx_bytes=0,
            disks=[{"tier": tier, "size_gib": 120}],
        )
        for customer in ("cust-1", "cust-2", "cust-3")
        for tier in ("ssd", "hdd")
    ]
    rated, _ = rate_quantities(measure_events(samples), book)
    amounts = {(r["customer_id"], r["dimension"]): r["amount"] for r in rated.iter_rows(named=True)}
    assert amounts == {
        ("cust-1", "ssd"): Decimal("5"),
        ("cust-1", "hdd"): Decimal("4"),
        ("cust-2", "ssd"): Decimal("2"),
        ("cust-2", "hdd"): Decimal("1"),
        ("cust-3", "ssd"): Decimal("2"),
        ("cust-3", "hdd"): Decimal("1"),
    }


def test_usage_without_a_price_in_force_is_refused_with_its_reason():
    book = _book(Price(Meter.VCPU_HOURS, Decimal("0.03"), AT))  # from 10:00, the sample starts 09:55
    rated, unpriced = rate_quantities(measure_events([vm_sample(ram_mb=0, disks=[], net_tx_bytes=0)]), book)
    assert rated.height == 0
    (reason,) = unpriced.values()
    assert "no price in force for meter vcpu_hours" in reason
