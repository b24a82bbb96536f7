"""The rows the pipeline publishes and the sink stores, as Arrow IPC frames on Kafka.

- accepted events: one row per valid event, with the id of the message it came in and the
  byte range it occupies there. The message itself is stored as received (the sink reads it from the events
  topic), so an event's JSON is kept byte for byte without a second copy crossing Kafka;
- rated usage: one row per event and meter. Quantities and amounts are exact decimals at 12
  places: an amount is rounded once, when it is rated (numerator x unit price / divisor), and
  again only when a total is shown in a currency.
"""

from __future__ import annotations

import hashlib
import io

import polars as pl

MONEY = pl.Decimal(38, 12)
TIMESTAMP = pl.Datetime("ms", "UTC")

ACCEPTED_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.String(),
    "type": pl.String(),
    "source": pl.String(),
    "time": TIMESTAMP,
    "customer_id": pl.String(),
    "resource_id": pl.String(),
    "message_id": pl.String(),
    "offset": pl.UInt32(),
    "length": pl.UInt32(),
}

USAGE_KEYS: dict[str, pl.DataType] = {
    "event_id": pl.String(),
    "event_type": pl.String(),
    "customer_id": pl.String(),
    "resource_id": pl.String(),
    "product": pl.String(),
    "meter": pl.String(),
    "dimension": pl.String(),
    "unit": pl.String(),
    "usage_start": TIMESTAMP,
    "usage_end": TIMESTAMP,
}
"""What one usage row is about: an event's usage of one meter over its interval."""

RATED_SCHEMA: dict[str, pl.DataType] = {
    **USAGE_KEYS,
    "quantity": MONEY,
    "unit_price": MONEY,
    "amount": MONEY,
    "currency": pl.String(),
}


def encode_frame(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> bytes:
    """Arrow IPC: a frame crosses Kafka without a per-row Python step."""
    buffer = io.BytesIO()
    frame.select(list(schema)).write_ipc(buffer, compression="zstd")
    return buffer.getvalue()


def decode_frame(payload: bytes) -> pl.DataFrame:
    return pl.read_ipc(io.BytesIO(payload))


def message_id(payload: bytes) -> str:
    """A received message's id: a hash of its bytes, so the same message sent twice is one.

    SHA-256 because CPUs hash it in hardware (about 2.5x blake2b's speed here), cut to 128 bits.
    """
    return hashlib.sha256(payload).hexdigest()[:32]
