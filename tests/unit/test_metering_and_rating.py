"""Golden cases: every expected figure is worked out by hand in the docstring."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import polars as pl
import pytest

from billing.adapters.catalog_file import load_catalog
from billing.pricing import Price, PriceBook, price_book
from pipeline.metering import event_columns, measure
from pipeline.rating import rate_quantities
from schemas.events import encode_batch
from schemas.intake import split_message
from schemas.meters import Meter
from tests.factories import AT, vdc_allocation, vm_sample, xaas_usage

BOOK = price_book(load_catalog(Path("billing/catalog.yaml")))


def measure_events(events: list, book: PriceBook = BOOK) -> pl.LazyFrame:
    return measure(event_columns(split_message(encode_batch(events))), book.xaas_meters)


def rated_by_meter(events: list, book: PriceBook = BOOK) -> dict[tuple[str, str], tuple[Decimal, Decimal]]:
    rated, unpriced = rate_quantities(measure_events(events, book), book)
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
    """12.5 GB restored (a counter) x 0.010 = 0.125 exactly: the quantity never passes through a float."""
    assert rated_by_meter([xaas_usage("restore_gb")]) == {
        ("xaas_units", "restore_gb"): (Decimal("12.5"), Decimal("0.125"))
    }


def test_a_stock_is_billed_over_time_and_a_level_only_at_close():
    """The demo catalog declares backup_gb a gauge and windows_server_licence a peak.
    360 GB held for a 300 s sample are 360 x 300 / 3600 = 30 GB-hours, at 0.00006 = 0.0018: a
    stock reported every 5 minutes is never summed as if it were consumed. 4 licences are a level
    at the sample's instant: 4 units, and no amount until the close knows the month's peak."""
    at = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
    stock = xaas_usage("backup_gb", "360", at=at) | {}
    stock["data"] = {**stock["data"], "interval_s": 300}
    licences = xaas_usage("windows_server_licence", "4", at=at)
    rated, unpriced = rate_quantities(measure_events([stock, licences]), BOOK)
    assert not unpriced
    rows = {r["meter"]: r for r in rated.iter_rows(named=True)}
    assert (rows["xaas_unit_hours"]["quantity"], rows["xaas_unit_hours"]["amount"]) == (Decimal(30), Decimal("0.0018"))
    assert rows["xaas_unit_hours"]["unit"] == "GB-hour"
    assert (rows["xaas_peak_units"]["quantity"], rows["xaas_peak_units"]["amount"]) == (Decimal(4), Decimal(0))
    assert rows["xaas_peak_units"]["usage_start"] == at


def test_a_sample_across_an_hour_is_split_by_time_and_the_pieces_add_up_exactly():
    """A 900 s sample ending 10:05 covers 09:50-10:00 (600 s) and 10:00-10:05 (300 s).
    2 vCPU: 1200 and 600 vCPU-seconds, 1/3 and 1/6 vCPU-hour.
    1000 bytes sent: 1000 x 600/900 = 666.666666666... bytes, kept in billionths of a byte and
    rounded down at the boundary: 666.666666666 and 333.333333334, which add up to 1000."""
    at = datetime(2026, 11, 2, 10, 5, tzinfo=UTC)
    sample = vm_sample(at=at, interval_s=900, ram_mb=0, disks=[], net_tx_bytes=1000)
    rated, _ = rate_quantities(measure_events([sample]), BOOK)
    pieces = sorted(
        (r["meter"], r["usage_start"].hour, r["base_quantity"], r["base_divisor"]) for r in rated.iter_rows(named=True)
    )
    assert pieces == [
        ("net_tx_gb", 9, Decimal("666.666666666"), 1_000_000_000),
        ("net_tx_gb", 10, Decimal("333.333333334"), 1_000_000_000),
        ("vcpu_hours", 9, Decimal(1200), 3600),
        ("vcpu_hours", 10, Decimal(600), 3600),
    ]


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
    assert "no price in EUR in force for meter vcpu_hours" in reason


def test_the_largest_stock_the_contract_allows_splits_into_hours_that_add_up_exactly():
    """999999999999999999.999999999 GB (the contract's largest quantity) held for 31 days
    (its longest interval) from 00:30: 2,678,400 s x that quantity in GB-seconds, cut into 745
    hourly pieces whose sum is the whole to the last billionth."""
    quantity = "999999999999999999.999999999"
    stock = xaas_usage("backup_gb", quantity, at=datetime(2026, 11, 1, 0, 30, tzinfo=UTC))
    stock["data"] = {**stock["data"], "interval_s": 2_678_400}
    rated, unpriced = rate_quantities(measure_events([stock]), BOOK)
    assert not unpriced
    assert rated.height == 745
    pieces = sum((Fraction(piece) for piece in rated["base_quantity"].to_list()), Fraction(0))
    assert pieces == Fraction(quantity) * 2_678_400  # fractions: Decimal's sum would round at 28 digits
