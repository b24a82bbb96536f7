"""Turn validated events into billable quantities: one row per event and meter.

A quantity is kept as an exact ``numerator / divisor`` pair (for instance vCPU x seconds over
3600 for vCPU-hours) so that rating divides once, after multiplying by the price, and no
repeating fraction is rounded twice. Only running VMs bill vCPU and RAM; disks bill whatever
the power state; a vDC bills what its allocation model says.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from schemas.events import Event, EventType
from schemas.meters import Meter

EXACT = pl.Decimal(38, 9)
SECONDS_PER_HOUR = 3600
MIB_PER_GIB = 1024
BYTES_PER_GB = 1_000_000_000

QUANTITY_COLUMNS = [
    "event_id",
    "event_type",
    "customer_id",
    "resource_id",
    "product",
    "meter",
    "dimension",
    "unit",
    "usage_start",
    "usage_end",
    "numerator",
    "divisor",
]


def measure_events(events: list[Event]) -> pl.DataFrame:
    """Billable quantities of a batch of valid events, zero quantities left out."""
    by_type: dict[str, list[Event]] = {kind.value: [] for kind in EventType}
    for event in events:
        by_type[event["type"]].append(event)
    parts = [measure(kind, by_type[kind.value]) for kind in EventType if by_type[kind.value]]
    if not parts:
        return _empty_quantities()
    return pl.concat(parts, how="vertical").filter(pl.col("numerator") > 0)


def measure(kind: EventType, events: list[Event]) -> pl.DataFrame:
    envelope = _envelope_frame(kind, events)
    if kind is EventType.VM_SAMPLE:
        return _measure_vm(envelope, events)
    if kind is EventType.VDC_ALLOCATION:
        return _measure_vdc(envelope, events)
    return _measure_xaas(envelope, events)


def _envelope_frame(kind: EventType, events: list[Event]) -> pl.DataFrame:
    data = [event["data"] for event in events]
    frame = pl.DataFrame(
        {
            "event_id": [event["id"] for event in events],
            "customer_id": [d["customer_id"] for d in data],
            "resource_id": [d["resource_id"] for d in data],
            "time": [event["time"] for event in events],
            "interval_s": [d["interval_s"] for d in data],
        },
        schema_overrides={"interval_s": pl.Int64},
    )
    usage_end = (
        pl.col("time")
        .str.replace(r"\+00:00$", "Z")
        .str.to_datetime("%Y-%m-%dT%H:%M:%S%.fZ", time_unit="ms", time_zone="UTC")
    )
    return frame.with_columns(event_type=pl.lit(kind.value), usage_end=usage_end).with_columns(
        usage_start=pl.col("usage_end") - pl.duration(seconds=pl.col("interval_s"))
    )


def _meter_rows(
    frame: pl.DataFrame, meter: Meter, numerator: pl.Expr, divisor: int, dimension: pl.Expr, product: pl.Expr
) -> pl.DataFrame:
    return frame.select(
        "event_id",
        "event_type",
        "customer_id",
        "resource_id",
        product.alias("product"),
        pl.lit(meter.value).alias("meter"),
        dimension.alias("dimension"),
        pl.lit(meter.unit).alias("unit"),
        "usage_start",
        "usage_end",
        numerator.cast(EXACT).alias("numerator"),
        pl.lit(divisor, dtype=pl.Int64).alias("divisor"),
    )


def _column(events: list[Event], key: str) -> list[Any]:
    return [event["data"][key] for event in events]


def _measure_vm(envelope: pl.DataFrame, events: list[Event]) -> pl.DataFrame:
    frame = envelope.with_columns(
        pl.Series("running", [p == "running" for p in _column(events, "power_state")]),
        pl.Series("vcpu", _column(events, "vcpu"), dtype=pl.Int64),
        pl.Series("ram_mb", _column(events, "ram_mb"), dtype=pl.Int64),
        pl.Series("net_rx_bytes", _column(events, "net_rx_bytes"), dtype=pl.Int64),
        pl.Series("net_tx_bytes", _column(events, "net_tx_bytes"), dtype=pl.Int64),
    )
    vm, none = pl.lit("vm"), pl.lit("")
    running_seconds = pl.col("interval_s") * pl.col("running").cast(pl.Int64)
    disks = _vm_disks(envelope, events)
    return pl.concat(
        [
            _meter_rows(frame, Meter.VCPU_HOURS, pl.col("vcpu") * running_seconds, SECONDS_PER_HOUR, none, vm),
            _meter_rows(
                frame, Meter.RAM_GIB_HOURS, pl.col("ram_mb") * running_seconds, MIB_PER_GIB * SECONDS_PER_HOUR, none, vm
            ),
            _meter_rows(frame, Meter.NET_RX_GB, pl.col("net_rx_bytes"), BYTES_PER_GB, none, vm),
            _meter_rows(frame, Meter.NET_TX_GB, pl.col("net_tx_bytes"), BYTES_PER_GB, none, vm),
            _meter_rows(
                disks,
                Meter.DISK_GIB_HOURS,
                pl.col("size_gib") * pl.col("interval_s"),
                SECONDS_PER_HOUR,
                pl.col("tier"),
                vm,
            ),
        ]
    )


def _vm_disks(envelope: pl.DataFrame, events: list[Event]) -> pl.DataFrame:
    """One row per (event, disk tier), disks of the same tier summed."""
    rows = [
        (index, disk["tier"], disk["size_gib"]) for index, event in enumerate(events) for disk in event["data"]["disks"]
    ]
    disks = pl.DataFrame(rows, schema={"row": pl.UInt32, "tier": pl.String, "size_gib": pl.Int64}, orient="row")
    per_tier = disks.group_by("row", "tier").agg(pl.col("size_gib").sum())
    return envelope.with_row_index("row").join(per_tier, on="row").drop("row")


def _measure_vdc(envelope: pl.DataFrame, events: list[Event]) -> pl.DataFrame:
    models = _column(events, "allocation_model")
    figure = {"allocation_pool": "allocated", "reservation_pool": "reserved", "pay_as_you_go": "used"}
    billed = {
        key: [d[key][figure[model]] for d, model in zip(_data(events), models, strict=True)]
        for key in ("cpu_mhz", "ram_mb", "storage_gib")
    }
    frame = envelope.with_columns(
        pl.Series("model", models),
        *(pl.Series(key, values, dtype=pl.Int64) for key, values in billed.items()),
    )
    seconds, vdc, model = pl.col("interval_s"), pl.lit("vdc"), pl.col("model")
    return pl.concat(
        [
            _meter_rows(
                frame, Meter.VDC_CPU_GHZ_HOURS, pl.col("cpu_mhz") * seconds, 1000 * SECONDS_PER_HOUR, model, vdc
            ),
            _meter_rows(
                frame, Meter.VDC_RAM_GIB_HOURS, pl.col("ram_mb") * seconds, MIB_PER_GIB * SECONDS_PER_HOUR, model, vdc
            ),
            _meter_rows(
                frame, Meter.VDC_STORAGE_GIB_HOURS, pl.col("storage_gib") * seconds, SECONDS_PER_HOUR, model, vdc
            ),
        ]
    )


def _measure_xaas(envelope: pl.DataFrame, events: list[Event]) -> pl.DataFrame:
    frame = envelope.with_columns(
        pl.Series("sku", _column(events, "sku")),
        pl.Series("quantity", _column(events, "quantity")).str.to_decimal(scale=9),
        pl.Series("xaas_unit", _column(events, "unit")),
    )
    rows = _meter_rows(frame, Meter.XAAS_UNITS, pl.col("quantity"), 1, pl.col("sku"), pl.col("sku"))
    return rows.with_columns(unit=frame["xaas_unit"])


def _data(events: list[Event]) -> list[dict[str, Any]]:
    return [event["data"] for event in events]


def _empty_quantities() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "event_id": pl.String,
            "event_type": pl.String,
            "customer_id": pl.String,
            "resource_id": pl.String,
            "product": pl.String,
            "meter": pl.String,
            "dimension": pl.String,
            "unit": pl.String,
            "usage_start": pl.Datetime("ms", "UTC"),
            "usage_end": pl.Datetime("ms", "UTC"),
            "numerator": EXACT,
            "divisor": pl.Int64,
        }
    )
