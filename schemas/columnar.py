"""Columnar VM samples: a poll cycle's samples as one Arrow IPC stream (schema ``vm.sample/1``).

The same usage as the JSON ``vm.sample`` CloudEvent, a row per sample and a column per field,
so that the stream validates, meters and rates a whole frame at once. On Kafka a stream travels
as a binary-mode CloudEvent (``ce_*`` headers, ``content-type`` ``CONTENT_TYPE``);
``POST /v1/events`` takes the same body with that content type. The schema is published in
``schemas/columnar/`` (``python -m schemas.publish``).

A row is checked against the rules the JSON contract states (``schemas.events``), and refused
alone with the same kind of reason; a sample's identity is its ``source`` and ``id`` and its
content digest is the JSON event's (``schemas.identity.content_digest``), so the same sample
sent once in each encoding is one sample. A stream whose schema is not ``vm.sample/1`` exactly
(a column missing, unknown, or of another type) is refused whole.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import polars as pl
import pyarrow as pa
import pyarrow.ipc

from schemas.events import (
    TIER_PATTERN,
    Event,
    EventType,
    PowerState,
    format_time,
)
from schemas.identifiers import UNPRINTABLE_CLASS, identifier_refusal, source_refusal
from schemas.identity import ROW_IDENTITY
from schemas.ipc_guard import Limits, read_stream

CONTENT_TYPE = "application/vnd.apache.arrow.stream"
SCHEMA_NAME = "vm.sample/1"
DATASCHEMA = "https://meterline.io/schemas/columnar/vm.sample.v1.json"
STREAM_START = b"\xff\xff\xff\xff"
"""Every Arrow IPC stream starts with this continuation marker; no JSON text can."""
LIMITS = Limits(rows=100_000, decoded_bytes=64 * 1024 * 1024)
"""A poll cycle of a large hypervisor is some thousands of samples; 100,000 rows decode to some
25 MB. More is refused before it is decompressed."""

DISK = pa.struct([("tier", pa.string()), ("size_gib", pa.int32()), ("device", pa.string())])
VM_SAMPLE_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("time", pa.timestamp("ms", "UTC"), nullable=False),
        pa.field("customer_id", pa.string(), nullable=False),
        pa.field("resource_id", pa.string(), nullable=False),
        pa.field("interval_s", pa.int32(), nullable=False),
        pa.field("power_state", pa.string(), nullable=False),
        pa.field("vcpu", pa.int32(), nullable=False),
        pa.field("ram_mb", pa.int32(), nullable=False),
        pa.field("disks", pa.list_(DISK), nullable=False),
        pa.field("cpu_time_s", pa.float64(), nullable=False),
        pa.field("net_rx_bytes", pa.int64(), nullable=False),
        pa.field("net_tx_bytes", pa.int64(), nullable=False),
        pa.field("resource_name", pa.string()),
        pa.field("hypervisor", pa.string()),
        pa.field("subject", pa.string()),
    ],
    metadata={"meterline.schema": SCHEMA_NAME},
)
"""``vm.sample`` as columns: ``time`` is the end of the interval, in milliseconds. Nullable
columns are the JSON event's optional fields; a null in another column refuses its row."""
OPTIONAL = ("resource_name", "hypervisor", "subject")
TIME_UNIT_MS = 1000
EPOCH_MS_RANGE = (
    int(datetime(1, 1, 1, tzinfo=UTC).timestamp() * TIME_UNIT_MS),
    int(datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC).timestamp() * TIME_UNIT_MS),
)
"""The times a row may hold: those a reader in any language can represent (a timestamp column
holds any int64)."""


def is_columnar(payload: bytes) -> bool:
    return payload[:4] == STREAM_START


def encode(samples: list[Event]) -> bytes:
    """JSON-ready ``vm.sample`` events (as collectors build them) as one Arrow stream."""
    table = pa.table(
        {
            "id": [s["id"] for s in samples],
            "source": [s["source"] for s in samples],
            "time": _times([s["time"] for s in samples]),
            **{
                name: [s["data"].get(name) for s in samples]
                for name in VM_SAMPLE_SCHEMA.names
                if name not in ("id", "source", "time", "subject")
            },
            "subject": [s.get("subject") for s in samples],
        },
        schema=VM_SAMPLE_SCHEMA,
    )
    return write(table)


def _times(times: list[str | datetime]) -> list[datetime]:
    """RFC 3339 times as instants; a poll cycle's samples share one, parsed once."""
    parsed = {time: datetime.fromisoformat(time) if isinstance(time, str) else time for time in set(times)}
    return [parsed[time] for time in times]


def write(table: pa.Table) -> bytes:
    """Uncompressed: a poll cycle of a hypervisor is some hundred rows, and LZ4 costs a reader a
    fixed few microseconds per buffer (four times the read of a hundred rows) to save a third of
    220 bytes a row. A stream sent with LZ4 is read all the same."""
    sink = io.BytesIO()
    options = pa.ipc.IpcWriteOptions(compression=None)
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue()


def binary_headers(producer: str, message: str) -> list[tuple[str, bytes]]:
    """The binary-mode CloudEvent a stream travels as on Kafka (CloudEvents Kafka binding)."""
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", message.encode()),
        ("ce_source", producer.encode()),
        ("ce_type", EventType.VM_SAMPLE.value.encode()),
        ("ce_dataschema", DATASCHEMA.encode()),
        ("content-type", CONTENT_TYPE.encode()),
    ]


def read(payload: bytes) -> pa.Table:
    """The stream's rows in the schema's column order, or InvalidEvent with the reason it is
    refused whole. A sender may order the columns as it likes; frames of several senders are
    then concatenated as one."""
    table = read_stream(payload, VM_SAMPLE_SCHEMA, LIMITS)
    return pa.Table.from_arrays(table.select(VM_SAMPLE_SCHEMA.names).columns, schema=VM_SAMPLE_SCHEMA)


@dataclass(frozen=True)
class Window:
    """The event times accepted now and the largest byte count a sample may report
    (``schemas.intake.Acceptance``)."""

    earliest: datetime
    latest: datetime
    max_sample_bytes: int


def refusals(frame: pl.DataFrame, window: Window | None) -> pl.Series:
    """Per row, why it is refused (the first rule it breaks), or null."""
    rules: list[tuple[pl.Expr, str] | pl.Expr] = [
        *((pl.col(name).is_null(), f"{_path(name)}: a value is required") for name in _REQUIRED),
        (~pl.col("time").dt.epoch("ms").is_between(*EPOCH_MS_RANGE), "time: Expected a time in the years 1 to 9999"),
        (~pl.col("id").str.len_chars().is_between(8, 128), "id: Expected `str` of length 8 to 128"),
        (pl.col("id").str.contains(UNPRINTABLE_CLASS), "id: holds a control or formatting character"),
        (pl.col("id") != pl.col("id").str.strip_chars(), "id: starts or ends with white space"),
        _reason_of("source", source_refusal),
        _reason_of("customer_id", identifier_refusal),
        (
            ~pl.col("resource_id").str.len_chars().is_between(1, 128),
            "data.resource_id: Expected `str` of length 1 to 128",
        ),
        (
            pl.col("resource_id").str.contains(UNPRINTABLE_CLASS),
            "data.resource_id: holds a control or formatting character",
        ),
        (
            pl.col("resource_id") != pl.col("resource_id").str.strip_chars(),
            "data.resource_id: starts or ends with white space",
        ),
        (~pl.col("interval_s").is_between(1, 86_400), "data.interval_s: Expected `int` >= 1 and <= 86400"),
        (~pl.col("power_state").is_in([state.value for state in PowerState]), _enum_reason()),
        (~pl.col("vcpu").is_between(0, 4096), "data.vcpu: Expected `int` >= 0 and <= 4096"),
        (~pl.col("ram_mb").is_between(0, 67_108_864), "data.ram_mb: Expected `int` >= 0 and <= 67108864"),
        (~(pl.col("cpu_time_s") >= 0) | pl.col("cpu_time_s").is_nan(), "data.cpu_time_s: Expected `float` >= 0.0"),
        (pl.col("cpu_time_s").is_infinite(), "data.cpu_time_s: Expected a finite `float`"),
        (pl.col("net_rx_bytes") < 0, "data.net_rx_bytes: Expected `int` >= 0"),
        (pl.col("net_tx_bytes") < 0, "data.net_tx_bytes: Expected `int` >= 0"),
        (pl.col("disks").list.len() > 64, "data.disks: Expected `array` of length <= 64"),
        *_disk_rules(),
        *(
            rule
            for name in OPTIONAL
            for rule in (
                (pl.col(name).str.len_chars() > 256, f"{_path(name)}: Expected `str` of length <= 256"),
                (
                    pl.col(name).str.contains(UNPRINTABLE_CLASS),
                    f"{_path(name)}: holds a control or formatting character",
                ),
            )
        ),
    ]
    if window is not None:
        rules += [
            (
                pl.col("time") < window.earliest,
                f"time: before {window.earliest:%Y-%m-%d}, the oldest month still billed",
            ),
            (pl.col("time") > window.latest, "time: later than now plus the clock-skew allowance"),
            *(
                (
                    pl.col(name) > window.max_sample_bytes,
                    f"data.{name}: more than one sample can plausibly report ({window.max_sample_bytes})",
                )
                for name in ("net_rx_bytes", "net_tx_bytes")
            ),
        ]
    reasons = [rule if isinstance(rule, pl.Expr) else pl.when(rule[0]).then(pl.lit(rule[1])) for rule in rules]
    return frame.select(pl.coalesce(reasons).alias("reason")).to_series()  # the first rule a row breaks


_REQUIRED = [field.name for field in VM_SAMPLE_SCHEMA if not field.nullable]
_DATA_FIELDS = {field.name for field in VM_SAMPLE_SCHEMA} - {"id", "source", "time", "subject"}


def _path(name: str) -> str:
    """A column's place in the JSON event, as its reasons name it."""
    return f"data.{name}" if name in _DATA_FIELDS else name


def _enum_reason() -> str:
    return "data.power_state: Expected `str` in " + ", ".join(repr(state.value) for state in PowerState)


def _reason_of(name: str, refusal: Callable[[str], str | None]) -> pl.Expr:
    """Why ``refusal`` refuses the row's value, or null, each distinct value checked once (a
    poll cycle repeats its sources and customers thousands of times)."""

    def reasons(values: pl.Series) -> pl.Series:
        distinct = values.drop_nulls().unique()
        found = {value: f"{_path(name)}: {why}" for value in distinct if (why := refusal(value)) is not None}
        return values.replace_strict(found, default=None, return_dtype=pl.String)

    return pl.col(name).map_batches(reasons, return_dtype=pl.String)


def _disk_rules() -> list[tuple[pl.Expr, str]]:
    disks = pl.col("disks")
    tiers, sizes, devices = (disks.list.eval(pl.element().struct.field(f)) for f in ("tier", "size_gib", "device"))
    return [
        (disks.list.eval(pl.element().is_null()).list.any(), "data.disks: a disk is null"),
        (tiers.list.eval(pl.element().is_null()).list.any(), "data.disks: a disk's tier is required"),
        (
            tiers.list.eval(~pl.element().str.contains(TIER_PATTERN)).list.any(),
            f"data.disks: a tier does not match {TIER_PATTERN!r}",
        ),
        (sizes.list.eval(pl.element().is_null()).list.any(), "data.disks: a disk's size_gib is required"),
        (
            sizes.list.eval(~pl.element().is_between(0, 1_048_576)).list.any(),
            "data.disks: a size_gib is not >= 0 and <= 1048576",
        ),
        (
            devices.list.eval(pl.element().str.len_chars() > 64).list.any(),
            "data.disks: a device is longer than 64 characters",
        ),
        (
            devices.list.eval(pl.element().str.contains(UNPRINTABLE_CLASS)).list.any(),
            "data.disks: a device holds a control or formatting character",
        ),
        (
            devices.list.drop_nulls().list.n_unique() < devices.list.drop_nulls().list.len(),
            "data.disks: a device is listed more than once",
        ),
    ]


def identities(frame: pl.DataFrame) -> list[str]:
    """Each row's identity, as ``schemas.identity.identity`` writes an event's."""
    return frame.select(ROW_IDENTITY).to_series().to_list()


def digests(frame: pl.DataFrame) -> list[int]:
    """Each row's content digest, equal to the JSON event's (``schemas.identity.content_digest``):
    the same canonical form (the struct's fields in order, labels left out), hashed alike.

    The one step per row of a columnar frame: a digest must stay the same across versions of
    every library (it is stored), so it is not a polars hash."""
    # a disk's canonical JSON written by polars: its tier is a checked word, its size an integer
    tier, size = pl.element().struct.field("tier"), pl.element().struct.field("size_gib").cast(pl.String)
    disk = pl.concat_str(pl.lit('{"tier":"'), tier, pl.lit('","size_gib":'), size, pl.lit("}"))
    disks = frame.select(pl.concat_str(pl.lit("["), pl.col("disks").list.eval(disk).list.join(","), pl.lit("]")))
    disk_lists = disks.to_series().to_list()
    epochs = frame["time"].dt.epoch("ms").to_list()
    encoded_time = {
        epoch: _canonical.encode(datetime.fromtimestamp(epoch / TIME_UNIT_MS, UTC))[1:-1].decode()
        for epoch in set(epochs)
    }
    fields = zip(
        epochs,
        *(
            frame[name].to_list()
            for name in ("customer_id", "resource_id", "interval_s", "power_state", "vcpu", "ram_mb")
        ),
        disk_lists,
        *(frame[name].to_list() for name in ("cpu_time_s", "net_rx_bytes", "net_tx_bytes")),
        strict=True,
    )
    encode_json, blake2b = _canonical.encode, hashlib.blake2b
    result = []
    for time, customer, resource, interval, state, vcpu, ram, disk_list, cpu, rx, tx in fields:
        data = {
            "customer_id": customer,
            "resource_id": resource,
            "interval_s": interval,
            "power_state": state,
            "vcpu": vcpu,
            "ram_mb": ram,
            "disks": msgspec.Raw(disk_list.encode()),
            "cpu_time_s": float(cpu),
            "net_rx_bytes": rx,
            "net_tx_bytes": tx,
        }
        canonical = encode_json((encoded_time[time], "VmSample", data))
        result.append(int.from_bytes(blake2b(canonical, digest_size=8).digest(), "little"))
    return result


_canonical = msgspec.json.Encoder()


def as_event(row: dict[str, Any]) -> Event:
    """A row as the JSON ``vm.sample`` CloudEvent it stands for: dead letters and the raw events
    behind an invoice line show it so."""
    data = {name: row.get(name) for name in VM_SAMPLE_SCHEMA.names if name in _DATA_FIELDS}
    data = {name: value for name, value in data.items() if not (name in OPTIONAL and value is None)}
    disks = data.get("disks")
    if isinstance(disks, list):
        data["disks"] = [{k: v for k, v in disk.items() if v is not None} if disk else disk for disk in disks]
    time = row.get("time")
    if isinstance(time, int):  # a refused row's time, which may lie outside any calendar
        in_range = EPOCH_MS_RANGE[0] <= time <= EPOCH_MS_RANGE[1]
        time = datetime.fromtimestamp(time / TIME_UNIT_MS, UTC) if in_range else f"{time} ms since 1970"
    event: Event = {
        "specversion": "1.0",
        "type": EventType.VM_SAMPLE.value,
        "id": row.get("id"),
        "source": row.get("source"),
        "time": format_time(time) if isinstance(time, datetime) else time,
        "datacontenttype": "application/json",
        "data": data,
    }
    if row.get("subject") is not None:
        event["subject"] = row["subject"]
    return event


def displayable(rows: pl.DataFrame) -> pl.DataFrame:
    """Rows whose time is epoch milliseconds, to make Python values of: a refused row's time
    may be no date at all."""
    return rows.with_columns(pl.col("time").dt.epoch("ms"))


def event_at(payload: bytes, row: int) -> Event:
    """Row ``row`` of a stored columnar message, as the JSON event it stands for."""
    return as_event(read(payload).slice(row, 1).to_pylist()[0])
