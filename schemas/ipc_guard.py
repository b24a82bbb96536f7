"""Read an Arrow IPC stream from a stranger without letting it size our memory.

An IPC record batch declares its row count and, per buffer, how many bytes it decompresses to.
Arrow allocates what it declares when it reads the batch, so a few kilobytes of LZ4 can claim
gigabytes (a batch of 10^7 rows of zeros, a dictionary bomb). This module reads each message's
metadata first (a flatbuffer: the few fields needed are read by hand, ``Message.fbs`` in the
Arrow format) and refuses the stream before anything is decompressed.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.ipc

from meterline.exceptions import InvalidEvent

RECORD_BATCH = 3
"""``MessageHeader.RecordBatch`` in ``Message.fbs`` (1 is a schema, 2 a dictionary batch)."""
UNCOMPRESSED = -1
"""A compressed body's buffer whose length prefix is -1 is stored as it is."""


@dataclass(frozen=True)
class Limits:
    rows: int
    decoded_bytes: int


def read_stream(payload: bytes, expected: pa.Schema, limits: Limits) -> pa.Table:
    """The stream's batches as one table, or InvalidEvent saying what is wrong with it: not an
    Arrow stream, truncated or corrupt, another schema, a dictionary, or more rows or bytes
    than ``limits`` allow (counted from the metadata, before any buffer is decompressed)."""
    try:
        reader = pa.ipc.MessageReader.open_stream(pa.py_buffer(payload))
        schema = pa.ipc.read_schema(reader.read_next_message())
    except StopIteration:
        raise InvalidEvent("the Arrow stream is empty: it has no schema") from None
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as error:
        raise InvalidEvent(f"the body is not an Arrow IPC stream: {error}") from None
    _check_schema(schema, expected)
    batches: list[pa.RecordBatch] = []
    rows = decoded = 0
    for message in _messages(reader):
        if message.type != "record batch":
            raise InvalidEvent(
                f"the Arrow stream holds a {message.type}: only record batches of plain columns are read"
            )
        batch_rows, batch_bytes = _declared(message)
        rows, decoded = rows + batch_rows, decoded + batch_bytes
        if rows > limits.rows:
            raise InvalidEvent(f"the Arrow stream has more than {limits.rows} rows: send them in several messages")
        if decoded > limits.decoded_bytes:
            raise InvalidEvent(f"the Arrow stream decodes to more than {limits.decoded_bytes} bytes")
        try:
            batches.append(pa.ipc.read_record_batch(message, schema))
        except (pa.ArrowInvalid, pa.ArrowException, OSError) as error:
            raise InvalidEvent(f"an Arrow record batch is corrupt: {error}") from None
    table = pa.Table.from_batches(batches, schema=schema)
    try:
        table.validate(full=True)
    except pa.ArrowInvalid as error:
        raise InvalidEvent(f"an Arrow record batch is corrupt: {error}") from None
    return table


def _messages(reader: pa.ipc.MessageReader) -> Iterator[pa.ipc.Message]:
    while True:
        try:
            yield reader.read_next_message()
        except StopIteration:
            return
        except (pa.ArrowInvalid, pa.ArrowException, OSError) as error:
            raise InvalidEvent(f"the Arrow stream is truncated or corrupt: {error}") from None


def _check_schema(schema: pa.Schema, expected: pa.Schema) -> None:
    names, wanted = schema.names, expected.names
    if len(set(names)) != len(names):
        twice = sorted({name for name in names if names.count(name) > 1})
        raise InvalidEvent(f"the Arrow schema is not {_version(expected)}: it names columns {twice} more than once")
    missing = [name for name in wanted if name not in names]
    extra = [name for name in names if name not in wanted]
    if missing or extra:
        raise InvalidEvent(
            f"the Arrow schema is not {_version(expected)}: "
            + "; ".join(
                part
                for part in (
                    f"missing columns {missing}" if missing else "",
                    f"unknown columns {extra}" if extra else "",
                )
                if part
            )
        )
    for field in expected:
        given = schema.field(field.name)
        if given.type != field.type:
            raise InvalidEvent(
                f"the Arrow schema is not {_version(expected)}: column {field.name!r} is {given.type}, not {field.type}"
            )


def _version(schema: pa.Schema) -> str:
    name: bytes = (schema.metadata or {}).get(b"meterline.schema", b"meterline's")
    return name.decode()


def _declared(message: pa.ipc.Message) -> tuple[int, int]:
    """The rows a record batch message declares, and the bytes its buffers decode to."""
    try:
        meta = memoryview(message.metadata)
        header = _u32(meta, 0)  # the root table: a Message
        if _scalar(meta, header, 1, "B", 0) != RECORD_BATCH:
            raise InvalidEvent("an Arrow message's header is not a record batch")
        batch = _offset(meta, header, 2)  # its header, a RecordBatch
        rows = _scalar(meta, batch, 0, "q", 0)
        compressed = _field(meta, batch, 3) is not None
        body = memoryview(message.body)
        decoded = 0
        for offset, length in _buffers(meta, batch):
            if length < 0 or offset < 0 or offset + length > len(body):
                raise InvalidEvent("an Arrow record batch points outside its body")
            if compressed and length >= 8:
                prefix = struct.unpack_from("<q", body, offset)[0]
                if prefix < UNCOMPRESSED:  # a negative size would hide a larger one from the sum
                    raise InvalidEvent("an Arrow record batch declares a buffer of negative size")
                decoded += length - 8 if prefix == UNCOMPRESSED else prefix
            else:
                decoded += length
        return rows, decoded
    except (struct.error, IndexError, ValueError):
        raise InvalidEvent("an Arrow message's metadata is corrupt") from None


def _u32(buffer: memoryview, at: int) -> int:
    return int(struct.unpack_from("<I", buffer, at)[0])


def _field(buffer: memoryview, table: int, index: int) -> int | None:
    """Where field ``index`` of the flatbuffer table at ``table`` lies, or None when absent."""
    vtable = table - struct.unpack_from("<i", buffer, table)[0]
    vtable_length = struct.unpack_from("<H", buffer, vtable)[0]
    slot = 4 + 2 * index
    if slot >= vtable_length:
        return None
    relative = struct.unpack_from("<H", buffer, vtable + slot)[0]
    return table + relative if relative else None


def _scalar(buffer: memoryview, table: int, index: int, kind: str, default: int) -> int:
    at = _field(buffer, table, index)
    return default if at is None else int(struct.unpack_from("<" + kind, buffer, at)[0])


def _offset(buffer: memoryview, table: int, index: int) -> int:
    at = _field(buffer, table, index)
    if at is None:
        raise ValueError("a required flatbuffer field is absent")
    return at + _u32(buffer, at)


def _buffers(buffer: memoryview, batch: int) -> list[tuple[int, int]]:
    """``RecordBatch.buffers``: a vector of (offset, length) structs of two int64."""
    at = _field(buffer, batch, 2)
    if at is None:
        return []
    vector = at + _u32(buffer, at)
    count = _u32(buffer, vector)
    return [struct.unpack_from("<qq", buffer, vector + 4 + 16 * n) for n in range(count)]
