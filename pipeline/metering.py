"""Turn validated events into billable quantities: one row per event and meter.

A quantity is kept as an exact ``numerator / divisor`` pair (for instance vCPU x seconds over
3600 for vCPU-hours) so that rating divides once, after multiplying by the price, and no
repeating fraction is rounded twice. Only running VMs bill vCPU and RAM; disks bill whatever
the power state; a vDC bills what its allocation model says.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from pipeline.validation import ValidEvents
from schemas.events import EventType, PowerState, UsageEvent, VdcAllocation, VmSample, XaasUsage
from schemas.meters import Meter
from schemas.records import ACCEPTED_SCHEMA, USAGE_KEYS

EXACT = pl.Decimal(38, 9)
SECONDS_PER_HOUR = 3600
MIB_PER_GIB = 1024
BYTES_PER_GB = 1_000_000_000

QUANTITY_SCHEMA: dict[str, pl.DataType] = {**USAGE_KEYS, "numerator": EXACT, "divisor": pl.Int64()}


def measure_events(events: list[UsageEvent]) -> pl.LazyFrame:
    """Billable quantities of valid events, zero quantities left out.

    Lazy: rating continues the same query plan, so polars plans metering and rating as one
    query."""
    vms = [e for e in events if isinstance(e, VmSample)]
    vdcs = [e for e in events if isinstance(e, VdcAllocation)]
    xaas = [e for e in events if isinstance(e, XaasUsage)]
    parts = [
        *([_measure_vm(_vm_frame(vms), vms)] if vms else []),
        *([_measure_vdc(_vdc_frame(vdcs))] if vdcs else []),
        *([_measure_xaas(_xaas_frame(xaas))] if xaas else []),
    ]
    if not parts:
        return pl.LazyFrame(schema=QUANTITY_SCHEMA)
    return pl.concat(parts, how="vertical").filter(pl.col("numerator") > 0)


def accepted_frame(group: ValidEvents) -> pl.DataFrame:
    """Each valid event's identity, the interval it covers, and where its JSON lies in its message."""
    events = group.events
    frame = pl.DataFrame(
        {
            "id": [e.id for e in events],
            "type": [type(e).__struct_config__.tag for e in events],
            "source": [e.source for e in events],
            "time": _epoch_ms(events),
            "customer_id": [e.data.customer_id for e in events],
            "resource_id": [e.data.resource_id for e in events],
            "message_id": group.message_ids,
            "offset": group.offsets,
            "length": group.lengths,
            "interval_s": [e.data.interval_s for e in events],
        },
        schema={
            **{name: pl.String for name in ("id", "type", "source", "customer_id", "resource_id", "message_id")},
            **{"time": pl.Int64, "offset": pl.UInt32, "length": pl.UInt32, "interval_s": pl.Int64},
        },
    ).with_columns(_as_utc("time"))
    return frame.with_columns(
        usage_start=pl.col("time") - pl.duration(seconds=pl.col("interval_s")), usage_end=pl.col("time")
    ).select(list(ACCEPTED_SCHEMA))


def _epoch_ms(events: Sequence[UsageEvent]) -> list[int]:
    """Event times as epoch milliseconds: polars converts integers far faster than datetimes.

    Agents sample a whole fleet at the same instant, so each distinct time is converted once.
    """
    times = [e.time for e in events]
    epoch_ms = {time: round(time.timestamp() * 1000) for time in set(times)}
    return [epoch_ms[time] for time in times]


def _as_utc(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.Datetime("ms")).dt.replace_time_zone("UTC")


def _envelope(kind: EventType, events: Sequence[UsageEvent], **columns: list[object]) -> pl.LazyFrame:
    frame = pl.LazyFrame(
        {
            "event_id": [e.id for e in events],
            "customer_id": [e.data.customer_id for e in events],
            "resource_id": [e.data.resource_id for e in events],
            "interval_s": [e.data.interval_s for e in events],
            "usage_end": _epoch_ms(events),
            **columns,
        },
        schema_overrides={"interval_s": pl.Int64, "usage_end": pl.Int64},
    ).with_columns(_as_utc("usage_end"))
    return frame.with_columns(
        event_type=pl.lit(kind.value), usage_start=pl.col("usage_end") - pl.duration(seconds=pl.col("interval_s"))
    )


def _meter_rows(
    frame: pl.LazyFrame,
    meter: Meter,
    numerator: pl.Expr,
    divisor: int,
    dimension: pl.Expr,
    product: pl.Expr,
    unit: pl.Expr | None = None,
) -> pl.LazyFrame:
    return frame.select(
        "event_id",
        "event_type",
        "customer_id",
        "resource_id",
        product.alias("product"),
        pl.lit(meter.value).alias("meter"),
        dimension.alias("dimension"),
        (pl.lit(meter.unit) if unit is None else unit).alias("unit"),
        "usage_start",
        "usage_end",
        numerator.cast(EXACT).alias("numerator"),
        pl.lit(divisor, dtype=pl.Int64).alias("divisor"),
    )


def _vm_frame(events: list[VmSample]) -> pl.LazyFrame:
    data = [e.data for e in events]
    return _envelope(
        EventType.VM_SAMPLE,
        events,
        running=[d.power_state is PowerState.RUNNING for d in data],
        vcpu=[d.vcpu for d in data],
        ram_mb=[d.ram_mb for d in data],
        net_rx_bytes=[d.net_rx_bytes for d in data],
        net_tx_bytes=[d.net_tx_bytes for d in data],
    )


def _measure_vm(frame: pl.LazyFrame, events: list[VmSample]) -> pl.LazyFrame:
    vm, none, seconds = pl.lit("vm"), pl.lit(""), pl.col("interval_s")
    running_seconds = seconds * pl.col("running").cast(pl.Int64)
    return pl.concat(
        [
            _meter_rows(frame, Meter.VCPU_HOURS, pl.col("vcpu") * running_seconds, SECONDS_PER_HOUR, none, vm),
            _meter_rows(
                frame,
                Meter.RAM_GIB_HOURS,
                pl.col("ram_mb") * running_seconds,
                MIB_PER_GIB * SECONDS_PER_HOUR,
                none,
                vm,
            ),
            _meter_rows(frame, Meter.NET_RX_GB, pl.col("net_rx_bytes"), BYTES_PER_GB, none, vm),
            _meter_rows(frame, Meter.NET_TX_GB, pl.col("net_tx_bytes"), BYTES_PER_GB, none, vm),
            _meter_rows(
                _disks_per_tier(frame, events),
                Meter.DISK_GIB_HOURS,
                pl.col("size_gib") * seconds,
                SECONDS_PER_HOUR,
                pl.col("tier"),
                vm,
            ),
        ]
    )


def _disks_per_tier(frame: pl.LazyFrame, events: list[VmSample]) -> pl.LazyFrame:
    """One row per (event, disk tier), disks of the same tier summed."""
    disks_of = [event.data.disks for event in events]
    rows = [index for index, disks in enumerate(disks_of) for _ in disks]
    tiers = [disk.tier for disks in disks_of for disk in disks]
    sizes = [disk.size_gib for disks in disks_of for disk in disks]
    disks = pl.LazyFrame(
        {"row": rows, "tier": tiers, "size_gib": sizes},
        schema={"row": pl.UInt32, "tier": pl.String, "size_gib": pl.Int64},
    )
    per_tier = disks.group_by("row", "tier").agg(pl.col("size_gib").sum())
    return frame.with_row_index("row").join(per_tier, on="row").drop("row")


def _vdc_frame(events: list[VdcAllocation]) -> pl.LazyFrame:
    data = [e.data for e in events]
    billed = {
        resource: [getattr(getattr(d, resource), d.allocation_model.billed_figure) for d in data]
        for resource in ("cpu_mhz", "ram_mb", "storage_gib")
    }
    return _envelope(EventType.VDC_ALLOCATION, events, model=[d.allocation_model.value for d in data], **billed)


def _measure_vdc(frame: pl.LazyFrame) -> pl.LazyFrame:
    seconds, vdc, model = pl.col("interval_s"), pl.lit("vdc"), pl.col("model")
    return pl.concat(
        [
            _meter_rows(
                frame, Meter.VDC_CPU_GHZ_HOURS, pl.col("cpu_mhz") * seconds, 1000 * SECONDS_PER_HOUR, model, vdc
            ),
            _meter_rows(
                frame,
                Meter.VDC_RAM_GIB_HOURS,
                pl.col("ram_mb") * seconds,
                MIB_PER_GIB * SECONDS_PER_HOUR,
                model,
                vdc,
            ),
            _meter_rows(
                frame, Meter.VDC_STORAGE_GIB_HOURS, pl.col("storage_gib") * seconds, SECONDS_PER_HOUR, model, vdc
            ),
        ]
    )


def _xaas_frame(events: list[XaasUsage]) -> pl.LazyFrame:
    data = [e.data for e in events]
    return _envelope(
        EventType.XAAS_USAGE,
        events,
        sku=[d.sku for d in data],
        quantity=[d.quantity for d in data],
        xaas_unit=[d.unit for d in data],
    )


def _measure_xaas(frame: pl.LazyFrame) -> pl.LazyFrame:
    quantity = pl.col("quantity").str.to_decimal(scale=9)
    return _meter_rows(frame, Meter.XAAS_UNITS, quantity, 1, pl.col("sku"), pl.col("sku"), pl.col("xaas_unit"))
