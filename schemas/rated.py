"""Rated usage rows: what the pipeline publishes and the sink stores, one row per event and meter.

Quantities and amounts are exact decimals at 12 places: an amount is rounded once, when it is
rated (numerator x unit price / divisor), and again only when a total is shown in a currency.
"""

from __future__ import annotations

import io

import polars as pl

MONEY = pl.Decimal(38, 12)

RATED_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.String(),
    "event_type": pl.String(),
    "customer_id": pl.String(),
    "resource_id": pl.String(),
    "product": pl.String(),
    "meter": pl.String(),
    "dimension": pl.String(),
    "unit": pl.String(),
    "usage_start": pl.Datetime("ms", "UTC"),
    "usage_end": pl.Datetime("ms", "UTC"),
    "quantity": MONEY,
    "unit_price": MONEY,
    "amount": MONEY,
    "currency": pl.String(),
}


def empty_rated() -> pl.DataFrame:
    return pl.DataFrame(schema=RATED_SCHEMA)


def encode_rated(frame: pl.DataFrame) -> bytes:
    """Arrow IPC: the rated frame crosses Kafka without a per-row Python step."""
    buffer = io.BytesIO()
    frame.select(list(RATED_SCHEMA)).write_ipc(buffer, compression="lz4")
    return buffer.getvalue()


def decode_rated(payload: bytes) -> pl.DataFrame:
    return pl.read_ipc(io.BytesIO(payload))
