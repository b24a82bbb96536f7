"""The invoice as a PDF (fpdf2): the same content as the HTML page, laid out for print."""

from __future__ import annotations

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from api.documents.view import InvoiceView

WIDTHS = (8, 88, 24, 22, 24, 24)


def render_pdf(view: InvoiceView) -> bytes:
    record, issuer, buyer = view.record, view.issuer, view.buyer
    pdf = FPDF(format="A4")
    pdf.set_title(view.title)
    pdf.set_author(issuer.name)
    pdf.add_page()
    colour = tuple(int(issuer.branding.colour[i : i + 2], 16) for i in (1, 3, 5))
    pdf.set_font("Helvetica", "B", 16)
    pdf.set_text_color(*colour)
    pdf.cell(0, 10, _latin(view.title), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(0, 0, 0)
    pdf.set_font("Helvetica", size=9)
    for text in (
        f"{issuer.name}, {issuer.street}, {issuer.postcode} {issuer.city} {issuer.country}",
        f"VAT {issuer.vat_id}" if issuer.vat_id else "",
        f"Billed to: {buyer.name}, {buyer.street} {buyer.postcode} {buyer.city} {buyer.country}",
        f"Period {view.period.name} - issued {view.issue_date} - due {view.due_date} - {record.currency}",
        f"Status: {record.status.value}",
    ):
        if text:
            pdf.cell(0, 5, _latin(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(4)
    _row(pdf, ("#", "Description", "Quantity", "Unit", "Unit price", "Amount"), bold=True)
    for number, line in enumerate(record.lines, start=1):
        _row(
            pdf,
            (
                str(number),
                line.description,
                view.quantity(line.quantity),
                line.unit,
                view.number(line.unit_price),
                view.money(line.amount),
            ),
        )
    pdf.ln(2)
    for label, amount in (
        ("Subtotal", record.subtotal),
        ("Discount", -record.discount),
        ("Net", record.net),
        (f"{record.tax_name} {view.number(record.tax_rate_percent)} %", record.tax_amount),
        (f"Total {record.currency}", record.total),
    ):
        pdf.cell(sum(WIDTHS[:-1]), 6, _latin(label), align="R")
        pdf.cell(WIDTHS[-1], 6, view.money(amount), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(6)
    pdf.multi_cell(0, 5, _latin(issuer.branding.terms))
    return bytes(pdf.output())


def _row(pdf: FPDF, cells: tuple[str, ...], bold: bool = False) -> None:
    pdf.set_font("Helvetica", "B" if bold else "", 8)
    for width, text, align in zip(WIDTHS, cells, ("L", "L", "R", "L", "R", "R"), strict=True):
        pdf.cell(width, 6, _latin(text)[:60], border="B", align=align)
    pdf.ln(6)


def _latin(text: str) -> str:
    """The PDF core fonts are Latin-1; anything else is replaced rather than failing the render."""
    return text.encode("latin-1", "replace").decode("latin-1")
