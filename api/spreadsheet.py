"""CSV cells that a spreadsheet shows and never runs.

Spreadsheets take a cell starting with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage return
before one) as a formula: a resource id such as ``=HYPERLINK(...)``, reported by whoever holds
an ingest key, would run in the customer's spreadsheet. Every text cell meterline writes to CSV
is written through here, with such a start escaped by a leading apostrophe (OWASP's advice);
figures are meterline's own decimals and stay numbers.
"""

from __future__ import annotations

import polars as pl

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_START = r"^[=+\-@\t\r]"


def text_cell(value: str) -> str:
    return f"'{value}" if value.startswith(FORMULA_START) else value


def text_columns(frame: pl.DataFrame, names: list[str]) -> pl.DataFrame:
    """``frame`` with the text ``names`` escaped as ``text_cell`` does."""
    return frame.with_columns(
        pl.when(pl.col(name).str.contains(_FORMULA_START))
        .then(pl.lit("'") + pl.col(name))
        .otherwise(pl.col(name))
        .alias(name)
        for name in names
    )
