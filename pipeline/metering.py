"""Turn validated events into billable quantities: one row per event and meter.

A quantity is kept as an exact ``numerator / divisor`` pair (for instance vCPU x seconds over
3600 for vCPU-hours) so that rating divides once, after multiplying by the price, and no
repeating fraction is rounded twice. Only running VMs bill vCPU and RAM; disks bill whatever
the power state; a vDC bills what its allocation model says.

The events' columns are taken out of the decoded structs once per batch (``event_columns``);
the accepted-event rows and every meter's quantities are then queries over those columns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import polars as pl

from schemas.events import (
    EVENT_STRUCTS,
    EventType,
    PowerState,
    UsageEvent,
    VdcAllocationData,
    VmSampleData,
    XaasUsageData,
)
from schemas.intake import ValidEvents
from schemas.meters import Meter
from schemas.records import ACCEPTED_SCHEMA, USAGE_KEYS

EXACT = pl.Decimal(38, 9)
NANO = Decimal(1).scaleb(-9)
SECONDS_PER_HOUR = 3600
MIB_PER_GIB = 1024
BYTES_PER_GB = 1_000_000_000

QUANTITY_SCHEMA: dict[str, pl.DataType] = {**USAGE_KEYS, "numerator": EXACT, "divisor": pl.Int64()}
DISK_SCHEMA: dict[str, pl.DataType] = {"row": pl.UInt32(), "tier": pl.String(), "size_gib": pl.Int64()}


@dataclass(frozen=True)
class EventColumns:
    """A batch's valid events as columns.

    ``per_type`` has one frame per event type present in the batch: the accepted-event columns
    and the figures that type bills. ``disks`` has one row per VM disk, with the ``row`` of its
    sample in the ``vm.sample`` frame.
    """

    per_type: dict[EventType, pl.LazyFrame]
    disks: pl.LazyFrame

    @property
    def accepted(self) -> pl.LazyFrame:
        """Each valid event's identity, the interval it covers, and where its JSON lies in its message."""
        frames = [frame.select(list(ACCEPTED_SCHEMA)) for frame in self.per_type.values()]
        return pl.concat(frames) if frames else pl.LazyFrame(schema=ACCEPTED_SCHEMA)


def event_columns(group: ValidEvents) -> EventColumns:
    """The columns of every valid event, taken out of the structs in one pass per column."""
    positions: dict[type[UsageEvent], list[int]] = {}
    for position, event in enumerate(group.events):
        positions.setdefault(type(event), []).append(position)
    per_type: dict[EventType, pl.LazyFrame] = {}
    disks = pl.LazyFrame(schema=DISK_SCHEMA)
    for kind, struct in EVENT_STRUCTS.items():
        if struct not in positions:
            continue
        events = [group.events[p] for p in positions[struct]]
        data = [event.data for event in events]
        per_type[kind] = _frame(kind, group, positions[struct], events, _FIGURES[kind](data))
        if kind is EventType.VM_SAMPLE:
            disks = _disks(data)
    return EventColumns(per_type, disks)


def row_columns(rows: pl.DataFrame) -> EventColumns:
    """The columns of valid columnar VM samples (``schemas.intake.ValidRows``, with a ``digest``
    column): the same frames ``event_columns`` takes out of structs, without a step per sample."""
    time = pl.col("time")
    samples = rows.lazy().with_columns(
        type=pl.lit(EventType.VM_SAMPLE.value),
        interval_s=pl.col("interval_s").cast(pl.Int64),
        running=pl.col("power_state") == PowerState.RUNNING.value,
        vcpu=pl.col("vcpu").cast(pl.Int64),
        ram_mb=pl.col("ram_mb").cast(pl.Int64),
        usage_start=time - pl.duration(seconds=pl.col("interval_s")),
        usage_end=time,
    )
    disks = (
        rows.lazy()
        .select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("row"), "disks")
        .explode("disks")
        .drop_nulls("disks")
        .select(
            "row",
            tier=pl.col("disks").struct.field("tier"),
            size_gib=pl.col("disks").struct.field("size_gib").cast(pl.Int64),
        )
    )
    return EventColumns({EventType.VM_SAMPLE: samples}, disks)


def measure(columns: EventColumns, xaas_meters: Mapping[str, Meter] | None = None) -> pl.LazyFrame:
    """Billable quantities of valid events, zero quantities left out; ``xaas_meters`` names the
    meter of each XaaS sku that declared how it aggregates (the others report counters).

    Lazy: rating continues the same query plan, so polars plans metering and rating as one
    query."""
    parts = []
    if (vms := columns.per_type.get(EventType.VM_SAMPLE)) is not None:
        parts.append(_measure_vm(vms, columns.disks))
    if (vdcs := columns.per_type.get(EventType.VDC_ALLOCATION)) is not None:
        parts.append(_measure_vdc(vdcs))
    if (xaas := columns.per_type.get(EventType.XAAS_USAGE)) is not None:
        parts.append(_measure_xaas(xaas, xaas_meters or {}))
    if not parts:
        return pl.LazyFrame(schema=QUANTITY_SCHEMA)
    return split_by_hour(pl.concat(parts, how="vertical").filter(pl.col("numerator") > 0))


def split_by_hour(quantities: pl.LazyFrame) -> pl.LazyFrame:
    """Rows whose interval crosses an hour split into one row per hour, by time, exactly.

    Hourly usage and monthly invoices then agree with the clock. A piece gets the share of the
    quantity its milliseconds cover, in whole billionths of a base unit, rounded down at every
    boundary the pieces have crossed so far: the pieces add up to the whole, exactly. Agents
    sample on aligned intervals, so most rows pass through untouched.
    """
    hour = pl.col("usage_start").dt.truncate("1h")
    crosses = pl.col("usage_end") > hour + pl.duration(hours=1)
    start, end = pl.col("usage_start"), pl.col("usage_end")
    elapsed = (end - start).dt.total_milliseconds()
    scaled = pl.col("numerator").to_physical()  # the Decimal(38, 9)'s integer: billionths of a base unit
    pieces = (
        quantities.filter(crosses)
        .with_columns(piece=pl.datetime_ranges(hour, end - pl.duration(milliseconds=1), interval="1h"))
        .explode("piece")
        .with_columns(
            piece_start=pl.max_horizontal("piece", start),
            piece_end=pl.min_horizontal(pl.col("piece") + pl.duration(hours=1), end),
        )
        .with_columns(
            numerator=(
                _share(scaled, (pl.col("piece_end") - start).dt.total_milliseconds(), elapsed)
                - _share(scaled, (pl.col("piece_start") - start).dt.total_milliseconds(), elapsed)
            ).cast(pl.Decimal(38, 0))
            * pl.lit(NANO, dtype=EXACT),
            usage_start=pl.col("piece_start"),
            usage_end=pl.col("piece_end"),
        )
        .select(list(QUANTITY_SCHEMA))
    )
    return pl.concat([quantities.filter(~crosses), pieces])


def _share(whole: pl.Expr, part: pl.Expr, total: pl.Expr) -> pl.Expr:
    """floor(whole x part / total), exactly, without forming whole x part: a 31-day XaaS stock
    in billionths of unit-seconds times its milliseconds would overflow 128 bits."""
    return (whole // total) * part + (whole % total) * part // total


def _frame(
    kind: EventType,
    group: ValidEvents,
    positions: list[int],
    events: list[UsageEvent],
    figures: dict[str, list[object]],
) -> pl.LazyFrame:
    """The accepted-event columns of one type's events, and the figures it bills."""
    frame = pl.LazyFrame(
        {
            "id": [e.id for e in events],
            "source": [e.source for e in events],
            "time": _epoch_ms(events),
            "customer_id": [e.data.customer_id for e in events],
            "resource_id": [e.data.resource_id for e in events],
            "message_id": [group.message_ids[p] for p in positions],
            "offset": [group.offsets[p] for p in positions],
            "length": [group.lengths[p] for p in positions],
            "digest": [group.digests[p] for p in positions] if group.digests else [0] * len(positions),
            "interval_s": [e.data.interval_s for e in events],
            **figures,
        },
        schema_overrides={
            "time": pl.Int64,
            "offset": pl.UInt32,
            "length": pl.UInt32,
            "digest": pl.UInt64,
            "interval_s": pl.Int64,
        },
    )
    time = pl.col("time").cast(pl.Datetime("ms")).dt.replace_time_zone("UTC")
    return frame.with_columns(
        type=pl.lit(kind.value),
        time=time,
        usage_start=time - pl.duration(seconds=pl.col("interval_s")),
        usage_end=time,
    )


def _epoch_ms(events: Sequence[UsageEvent]) -> list[int]:
    """Event times as epoch milliseconds: polars converts integers far faster than datetimes.

    Agents sample a whole fleet at the same instant, so each distinct time is converted once.
    """
    times = [e.time for e in events]
    epoch_ms: dict[datetime, int] = {time: round(time.timestamp() * 1000) for time in set(times)}
    return [epoch_ms[time] for time in times]


def _vm_figures(data: list[VmSampleData]) -> dict[str, list[object]]:
    return {
        "running": [d.power_state is PowerState.RUNNING for d in data],
        "vcpu": [d.vcpu for d in data],
        "ram_mb": [d.ram_mb for d in data],
        "net_rx_bytes": [d.net_rx_bytes for d in data],
        "net_tx_bytes": [d.net_tx_bytes for d in data],
    }


def _vdc_figures(data: list[VdcAllocationData]) -> dict[str, list[object]]:
    billed: dict[str, list[object]] = {
        resource: [getattr(getattr(d, resource), d.allocation_model.billed_figure) for d in data]
        for resource in ("cpu_mhz", "ram_mb", "storage_gib")
    }
    return {"model": [d.allocation_model.value for d in data], **billed}


def _xaas_figures(data: list[XaasUsageData]) -> dict[str, list[object]]:
    return {"sku": [d.sku for d in data], "quantity": [d.quantity for d in data], "xaas_unit": [d.unit for d in data]}


_FIGURES: dict[EventType, Callable[[list[Any]], dict[str, list[object]]]] = {
    EventType.VM_SAMPLE: _vm_figures,
    EventType.VDC_ALLOCATION: _vdc_figures,
    EventType.XAAS_USAGE: _xaas_figures,
}


def _disks(data: list[Any]) -> pl.LazyFrame:
    """The disks of VM samples (``data`` holds their ``VmSampleData``), by the row of their sample."""
    disks_of = [d.disks for d in data]
    return pl.LazyFrame(
        {
            "row": [row for row, disks in enumerate(disks_of) for _ in disks],
            "tier": [disk.tier for disks in disks_of for disk in disks],
            "size_gib": [disk.size_gib for disks in disks_of for disk in disks],
        },
        schema=DISK_SCHEMA,
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
        pl.col("id").alias("event_id"),
        "source",
        pl.col("type").alias("event_type"),
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


def _measure_vm(frame: pl.LazyFrame, disks: pl.LazyFrame) -> pl.LazyFrame:
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
                _disks_per_tier(frame, disks),
                Meter.DISK_GIB_HOURS,
                pl.col("size_gib") * seconds,
                SECONDS_PER_HOUR,
                pl.col("tier"),
                vm,
            ),
        ]
    )


def _disks_per_tier(frame: pl.LazyFrame, disks: pl.LazyFrame) -> pl.LazyFrame:
    """One row per (event, disk tier), disks of the same tier summed."""
    per_tier = disks.group_by("row", "tier").agg(pl.col("size_gib").sum())
    return frame.with_row_index("row").join(per_tier, on="row").drop("row")


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


def _measure_xaas(frame: pl.LazyFrame, xaas_meters: Mapping[str, Meter]) -> pl.LazyFrame:
    """A counter's report is its quantity; a gauge's is held for its interval (GB -> GB-hours,
    in GB-seconds over 3600); a level (peak, latest) stands at the instant it was observed."""
    meters = {sku: meter.value for sku, meter in xaas_meters.items()}
    meter = pl.col("sku").replace_strict(meters, default=Meter.XAAS_UNITS.value, return_dtype=pl.String)
    gauge = meter == Meter.XAAS_UNIT_HOURS.value
    level = meter.is_in([m.value for m in Meter if m.aggregation.is_level])
    quantity = pl.col("quantity").str.to_decimal(scale=9)
    return frame.select(
        pl.col("id").alias("event_id"),
        "source",
        pl.col("type").alias("event_type"),
        "customer_id",
        "resource_id",
        pl.col("sku").alias("product"),
        meter.alias("meter"),
        pl.col("sku").alias("dimension"),
        pl.when(gauge).then(pl.col("xaas_unit") + "-hour").otherwise(pl.col("xaas_unit")).alias("unit"),
        pl.when(level).then(pl.col("usage_end")).otherwise(pl.col("usage_start")).alias("usage_start"),
        "usage_end",
        pl.when(gauge).then(quantity * pl.col("interval_s")).otherwise(quantity).cast(EXACT).alias("numerator"),
        pl.when(gauge).then(SECONDS_PER_HOUR).otherwise(1).cast(pl.Int64).alias("divisor"),
    )
