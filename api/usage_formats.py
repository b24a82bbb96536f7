"""Usage rows as the API shows them: JSON and the hourly CSV export."""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl
import pyarrow as pa

from api.spreadsheet import text_columns
from storage.usage_queries import HOURLY_KEYS

CSV_CHUNK_BYTES = 64 * 1024
CSV_COLUMNS = ["hour", *HOURLY_KEYS, "quantity", "amount"]


def as_text(rows: pa.Table) -> pl.DataFrame:
    """Usage rows as they are shown, in order of time and then of what they are usage of: times
    as ISO 8601 in UTC, figures as fixed-point strings."""
    frame = pl.DataFrame(rows)
    keys = [name for name in frame.columns if name not in ("quantity", "amount", "rated_rows")]
    return frame.sort(keys).with_columns(
        pl.col("period_start").dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        pl.col("quantity", "amount").cast(pl.String),
    )


def rows_json(rows: pa.Table) -> bytes:
    """Usage rows as the JSON array of ``UsageRow`` objects (the fields a grouping lacks null)."""
    shown = as_text(rows)
    absent = [pl.lit(None, pl.String).alias(name) for name in ("resource_id", "product") if name not in shown.columns]
    order = ["period_start", "resource_id", "product", "meter", "dimension", "unit", "currency"]
    return shown.with_columns(absent).select([*order, "quantity", "amount", "rated_rows"]).write_json().encode()


def csv_chunks(hours: pa.Table) -> Iterator[bytes]:
    """The hourly CSV, written by polars, handed out in chunks. The rows are read before a
    response starts, so that a failure is answered with an error rather than a cut file, and
    so that no client is held while a client downloads."""
    shown = as_text(hours).rename({"period_start": "hour"}).select(CSV_COLUMNS)
    text = text_columns(shown, list(HOURLY_KEYS)).write_csv().encode()
    for at in range(0, max(len(text), 1), CSV_CHUNK_BYTES):
        yield text[at : at + CSV_CHUNK_BYTES]
