"""The invoice's lines as CSV, for spreadsheets and accounting imports."""

from __future__ import annotations

import csv
import io

from api.documents.view import InvoiceView
from api.spreadsheet import text_cell

COLUMNS = ["invoice", "number", "line", "kind", "description", "meter", "dimension", "quantity", "unit", "unit_price"]


def render_csv(view: InvoiceView) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*COLUMNS, "amount", "currency", "adjusts_period"])
    record = view.record
    for number, line in enumerate(record.lines, start=1):
        writer.writerow(
            [
                text_cell(record.invoice_id),
                text_cell(record.number),
                number,
                line.kind.value,
                text_cell(line.description),
                line.meter,
                text_cell(line.dimension),
                view.quantity(line.quantity),
                text_cell(line.unit),
                view.number(line.unit_price),
                view.money(line.amount),
                record.currency,
                line.adjusts_period,
            ]
        )
    return out.getvalue()
