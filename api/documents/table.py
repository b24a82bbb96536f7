"""The invoice's lines as CSV, for spreadsheets and accounting imports."""

from __future__ import annotations

import csv
import io

from api.documents.view import InvoiceView

COLUMNS = ["invoice", "number", "line", "kind", "description", "meter", "dimension", "quantity", "unit", "unit_price"]


def render_csv(view: InvoiceView) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*COLUMNS, "amount", "currency", "adjusts_period"])
    record = view.record
    for number, line in enumerate(record.lines, start=1):
        writer.writerow(
            [
                record.invoice_id,
                record.number,
                number,
                line.kind.value,
                line.description,
                line.meter,
                line.dimension,
                view.quantity(line.quantity),
                line.unit,
                view.number(line.unit_price),
                view.money(line.amount),
                record.currency,
                line.adjusts_period,
            ]
        )
    return out.getvalue()
