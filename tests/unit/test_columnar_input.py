"""Bad columnar input is refused with a reason before it costs memory: nothing of it is kept."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.ipc
import pytest

from meterline.exceptions import InvalidEvent
from schemas import columnar, ipc_guard
from schemas.intake import split_row_group, split_rows
from tests.factories import vm_sample

GOOD = columnar.encode([vm_sample("vm-1"), vm_sample("vm-2")])


def refusal(payload: bytes) -> str:
    with pytest.raises(InvalidEvent) as refused:
        columnar.read(payload)
    return refused.value.reason


def stream(table: pa.Table, compression: str | None = "lz4") -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression=compression)) as writer:
        writer.write_table(table)
    return sink.getvalue()


def sample_table() -> pa.Table:
    return columnar.read(GOOD)


def test_a_good_stream_reads_back_its_rows():
    assert columnar.read(GOOD)["resource_id"].to_pylist() == ["vm-1", "vm-2"]


@pytest.mark.parametrize("cut", [3, 8, 100, len(GOOD) - 9, len(GOOD) - 1])
def test_a_truncated_stream_is_refused(cut):
    assert "Arrow" in refusal(GOOD[:cut])


def test_a_corrupt_stream_is_refused():
    corrupt = bytearray(GOOD)
    for at in range(len(corrupt) // 2, len(corrupt) - 8, 7):
        corrupt[at] ^= 0x5A
    assert refusal(bytes(corrupt))


def test_json_sent_as_arrow_is_refused():
    assert "not an Arrow IPC stream" in refusal(b'[{"id": "x"}]')


def test_missing_and_unknown_columns_are_named():
    table = sample_table().drop_columns(["vcpu"]).append_column("gpu", pa.array([1, 1]))
    assert (
        refusal(stream(table))
        == "the Arrow schema is not vm.sample/1: missing columns ['vcpu']; unknown columns ['gpu']"
    )


def test_a_mistyped_column_is_named():
    table = sample_table()
    table = table.set_column(table.schema.get_field_index("vcpu"), "vcpu", table["vcpu"].cast(pa.string()))
    assert refusal(stream(table)) == "the Arrow schema is not vm.sample/1: column 'vcpu' is string, not int32"


def test_ten_million_rows_are_refused_before_they_are_decompressed():
    """10^7 rows of zeros compress to a few hundred kilobytes and would decode to some 80 MB a column."""
    rows = 10**7
    table = pa.table(
        {name: pa.nulls(rows, field.type) if field.nullable else _zero(field.type, rows) for name, field in _fields()},
        schema=columnar.VM_SAMPLE_SCHEMA,
    )
    payload = stream(table)
    assert len(payload) < 8 * 1024 * 1024, "it fits in a request body"
    assert refusal(payload) == "the Arrow stream has more than 100000 rows: send them in several messages"


def test_a_stream_that_decodes_to_too_many_bytes_is_refused():
    """A long string of one letter: kilobytes on the wire, 80 MB decoded."""
    table = sample_table()
    long_name = pa.array(["a" * (80 * 1024 * 1024), None], pa.string())
    table = table.set_column(table.schema.get_field_index("resource_name"), "resource_name", long_name)
    assert refusal(stream(table)).startswith("the Arrow stream decodes to more than")


def test_a_dictionary_is_refused_before_it_is_read():
    """A dictionary-encoded column (a dictionary bomb's carrier) is not schema vm.sample/1."""
    table = sample_table()
    index = table.schema.get_field_index("customer_id")
    table = table.set_column(index, "customer_id", table["customer_id"].dictionary_encode())
    assert "column 'customer_id' is dictionary<values=string" in refusal(stream(table))


def test_an_empty_body_and_a_schema_alone_are_refused():
    assert refusal(b"") == "the Arrow stream is empty: it has no schema"
    empty = split_rows(stream(sample_table().slice(0, 0)))
    assert (empty.frame.height, empty.rejected) == (0, [])


def test_a_refused_stream_is_one_rejection_and_no_row():
    checked = split_rows(GOOD[:50])
    assert checked.frame.height == 0
    (rejection,) = checked.rejected
    assert rejection.event_id is None and "Arrow" in rejection.reason
    assert rejection.event["content_type"] == columnar.CONTENT_TYPE


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"vcpu": -1}, "data.vcpu: Expected `int` >= 0 and <= 4096"),
        ({"interval_s": 0}, "data.interval_s: Expected `int` >= 1 and <= 86400"),
        ({"power_state": "exploded"}, "data.power_state: Expected `str` in 'running', 'stopped', 'suspended'"),
        ({"cpu_time_s": float("nan")}, "data.cpu_time_s: Expected `float` >= 0.0"),
        ({"cpu_time_s": float("inf")}, "data.cpu_time_s: Expected a finite `float`"),
        ({"net_rx_bytes": -5}, "data.net_rx_bytes: Expected `int` >= 0"),
        ({"customer_id": "../etc"}, "data.customer_id: '../etc' is not an identifier"),
        ({"resource_id": " vm"}, "data.resource_id: starts or ends with white space"),
        ({"resource_id": "vm\u202e1"}, "data.resource_id: holds a control or formatting character"),
        ({"hypervisor": "hv\x00"}, "data.hypervisor: holds a control or formatting character"),
        ({"disks": [{"tier": "SSD!", "size_gib": 1}]}, "data.disks: a tier does not match"),
        (
            {
                "disks": [
                    {"tier": "ssd", "size_gib": 1, "device": "vda"},
                    {"tier": "ssd", "size_gib": 2, "device": "vda"},
                ]
            },
            "data.disks: a device is listed more than once",
        ),
    ],
)
def test_a_bad_row_is_refused_with_the_reason_and_the_others_kept(change, reason):
    change = dict(change)
    bad = vm_sample(change.pop("resource_id", "vm-bad"), **change)
    checked = split_rows(columnar.encode([vm_sample("vm-1"), bad]))
    assert checked.frame["resource_id"].to_list() == ["vm-1"]
    (rejection,) = checked.rejected
    assert rejection.index == 1 and rejection.reason.startswith(reason)


def test_a_null_in_a_required_column_refuses_its_row():
    table = sample_table()
    index = table.schema.get_field_index("ram_mb")
    table = table.set_column(index, pa.field("ram_mb", pa.int32()), pa.array([None, 4096], pa.int32()))
    checked = split_rows(stream(table))
    assert [r.reason for r in checked.rejected] == ["data.ram_mb: a value is required"]
    assert checked.frame["resource_id"].to_list() == ["vm-2"]


def _fields():
    return [(field.name, field) for field in columnar.VM_SAMPLE_SCHEMA]


def _zero(kind: pa.DataType, rows: int) -> pa.Array:
    """``rows`` zeros (empty strings and lists) of ``kind``, made from buffers at once."""
    offsets = pa.py_buffer(np.zeros(rows + 1, dtype=np.int32).tobytes())
    if pa.types.is_list(kind):
        return pa.ListArray.from_buffers(kind, rows, [None, offsets], children=[pa.array([], kind.value_type)])
    if pa.types.is_string(kind):
        return pa.Array.from_buffers(kind, rows, [None, offsets, pa.py_buffer(b"")])
    return pa.Array.from_buffers(kind, rows, [None, pa.py_buffer(np.zeros(rows, dtype=np.int64).tobytes())])


def test_streams_whose_columns_come_in_another_order_are_read_together():
    table = sample_table()
    reordered = stream(table.select(list(reversed(table.column_names))))
    checked = split_row_group([GOOD, reordered])
    assert checked.frame["resource_id"].to_list() == ["vm-1", "vm-2", "vm-1", "vm-2"]
    assert checked.frame.columns[:3] == ["id", "source", "time"]


def test_a_null_disk_refuses_its_row():
    table = sample_table()
    index = table.schema.get_field_index("disks")
    disks = pa.array([[None], [{"tier": "ssd", "size_gib": 1, "device": None}]], pa.list_(columnar.DISK))
    checked = split_rows(stream(table.set_column(index, "disks", disks)))
    assert [r.reason for r in checked.rejected] == ["data.disks: a disk is null"]
    assert checked.rejected[0].event["data"]["disks"] == [None]


@pytest.mark.parametrize("epoch_ms", [569_000_000_000_000, -200_000_000_000_000, 2**63 - 1, -(2**63)])
def test_a_time_no_calendar_holds_refuses_its_row(epoch_ms):
    table = sample_table()
    index = table.schema.get_field_index("time")
    times = pa.array([epoch_ms, 1_793_000_000_000], pa.int64()).cast(pa.timestamp("ms", "UTC"))
    checked = split_rows(stream(table.set_column(index, pa.field("time", times.type, nullable=False), times)))
    (rejection,) = checked.rejected
    assert rejection.reason == "time: Expected a time in the years 1 to 9999"
    assert rejection.event["time"] == f"{epoch_ms} ms since 1970"
    assert checked.frame["resource_id"].to_list() == ["vm-2"]


def test_a_column_named_twice_is_refused():
    table = sample_table()
    twice = pa.table([*table.columns, table["id"]], names=[*table.column_names, "id"])
    assert refusal(stream(twice)) == "the Arrow schema is not vm.sample/1: it names columns ['id'] more than once"


def test_a_negative_buffer_size_cannot_hide_a_large_one():
    """A compressed buffer's size prefix below -1 would cancel a huge one in the sum of sizes."""
    payload = bytearray(stream(sample_table()))
    reader = pa.ipc.MessageReader.open_stream(pa.py_buffer(bytes(payload)))
    reader.read_next_message()
    batch = reader.read_next_message()
    body_start = len(payload) - 8 - batch.body.size  # the body ends the batch message, then end of stream
    meta = memoryview(batch.metadata)
    offset, length = next(b for b in ipc_guard._buffers(meta, _record_batch(meta)) if b[1] >= 8)
    payload[body_start + offset : body_start + offset + 8] = (-(2**40)).to_bytes(8, "little", signed=True)
    assert refusal(bytes(payload)) == "an Arrow record batch declares a buffer of negative size"


def _record_batch(meta: memoryview) -> int:
    return ipc_guard._offset(meta, ipc_guard._u32(meta, 0), 2)


def test_a_stream_whose_check_fails_unforeseen_is_refused_alone(monkeypatch):
    """A check that raises on one message's rows refuses that message whole, with the error;
    the other messages of its group are checked on their own and kept."""
    checks = columnar.refusals

    def failing_on_poison(frame, window):
        if "vm-poison" in frame["resource_id"].to_list():
            raise ValueError("a row no rule foresaw")
        return checks(frame, window)

    monkeypatch.setattr(columnar, "refusals", failing_on_poison)
    poison = columnar.encode([vm_sample("vm-poison")])
    checked = split_row_group([GOOD, poison, columnar.encode([vm_sample("vm-3")])])
    assert checked.frame["resource_id"].to_list() == ["vm-1", "vm-2", "vm-3"]
    (rejection,) = checked.rejected
    assert rejection.reason == "the stage could not check this stream: ValueError: a row no rule foresaw"
    assert rejection.event["content_type"] == columnar.CONTENT_TYPE
