"""The invoice as a PDF (fpdf2): the content of the HTML page, laid out for print on A4.

The fonts are embedded (Source Sans Pro, shipped as a Python package), as PDF/A-3 and thus
Factur-X require; descriptions wrap inside their column rather than being cut, and the lines
table repeats its headings on each page.
"""

from __future__ import annotations

import io
from importlib.resources import files

from fpdf import FPDF, FontFace
from fpdf.enums import TableBordersLayout, XPos, YPos

from api.documents.view import InvoiceView

FONT = "SourceSans"
FONT_FILES = files("font_source_sans_pro") / "files"
MARGIN = 15.0
WIDTHS = (86.0, 24.0, 22.0, 24.0, 24.0)
"""Description, quantity, unit, unit price, amount: 180 mm, the page less its margins."""
ALIGNS = ("LEFT", "RIGHT", "LEFT", "RIGHT", "RIGHT")
GREY = (90, 90, 90)


class _Document(FPDF):
    """A4 pages with the issuer's name and the page number at the foot."""

    def __init__(self, view: InvoiceView) -> None:
        super().__init__(format="A4")
        self.view = view
        self.set_margins(MARGIN, MARGIN, MARGIN)
        self.set_auto_page_break(auto=True, margin=20)
        self.add_font(FONT, "", str(FONT_FILES / "SourceSansPro-Regular.ttf"))
        self.add_font(FONT, "B", str(FONT_FILES / "SourceSansPro-Bold.ttf"))
        self.set_title(view.title)
        self.set_author(view.issuer.name)
        self.set_creator("meterline")
        self.set_lang("en")

    def footer(self) -> None:
        self.set_y(-14)
        self.set_font(FONT, size=8)
        self.set_text_color(*GREY)
        self.cell(0, 5, f"{self.view.issuer.name} - {self.view.title} - page {self.page_no()} of {{nb}}", align="C")


def render_pdf(view: InvoiceView) -> bytes:
    pdf = _Document(view)
    pdf.add_page()
    _header(pdf, view)
    _parties(pdf, view)
    _lines(pdf, view)
    _totals(pdf, view)
    _payment(pdf, view)
    return bytes(pdf.output())


def _header(pdf: _Document, view: InvoiceView) -> None:
    """Logo on the left, the issuer's identity on the right, a rule in its colour below."""
    top = pdf.get_y()
    if (logo := view.logo) is not None:
        pdf.image(io.BytesIO(logo[1]), x=MARGIN, y=top, h=16, keep_aspect_ratio=True)
    issuer = view.issuer
    pdf.set_xy(110, top)
    pdf.set_font(FONT, "B", 11)
    pdf.multi_cell(85, 5, issuer.name, align="R", new_x=XPos.LEFT, new_y=YPos.NEXT)
    pdf.set_font(FONT, size=9)
    for text in view.address(issuer) + ([f"VAT {issuer.vat_id}"] if issuer.vat_id else []):
        pdf.multi_cell(85, 4.5, text, align="R", new_x=XPos.LEFT, new_y=YPos.NEXT)
    y = max(pdf.get_y(), top + 18) + 3
    pdf.set_draw_color(*view.colour)
    pdf.set_line_width(0.8)
    pdf.line(MARGIN, y, 210 - MARGIN, y)
    pdf.set_xy(MARGIN, y + 4)
    pdf.set_font(FONT, "B", 18)
    pdf.set_text_color(*view.colour)
    pdf.cell(0, 9, view.title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(0, 0, 0)
    if view.is_draft:
        pdf.set_font(FONT, "B", 9)
        pdf.set_text_color(170, 40, 40)
        pdf.cell(0, 5, "DRAFT - a preview, not a tax document", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_text_color(0, 0, 0)
    pdf.ln(2)


def _parties(pdf: _Document, view: InvoiceView) -> None:
    """The buyer's address on the left, the document's dates and references on the right."""
    top = pdf.get_y()
    buyer = view.buyer
    pdf.set_font(FONT, "B", 9)
    pdf.cell(90, 5, "Billed to", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, size=10)
    for text in [buyer.name, *view.address(buyer), *([f"VAT {buyer.vat_id}"] if buyer.vat_id else [])]:
        pdf.multi_cell(90, 5, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    left_bottom = pdf.get_y()
    details = [
        ("Date", f"{view.issue_date:%d %B %Y}"),
        ("Due", "-" if view.is_credit_note else f"{view.due_date:%d %B %Y}"),
        ("Period", view.period_label),
        ("Currency", view.record.currency),
        ("Customer", view.record.buyer_id),
    ]
    if view.record.credits_number:
        details.append(("Cancels invoice", view.record.credits_number))
    pdf.set_xy(115, top)
    for label, value in details:
        pdf.set_font(FONT, "B", 9)
        pdf.cell(30, 5, label)
        pdf.set_font(FONT, size=9)
        pdf.multi_cell(50, 5, value, align="R", new_x=XPos.LEFT, new_y=YPos.NEXT)
        pdf.set_x(115)
    pdf.set_xy(MARGIN, max(left_bottom, pdf.get_y()) + 6)


def _lines(pdf: _Document, view: InvoiceView) -> None:
    colour = view.colour
    headings = FontFace(emphasis="BOLD", color=(255, 255, 255), fill_color=colour, size_pt=9)
    group_style = FontFace(emphasis="BOLD", fill_color=(238, 241, 245), size_pt=9)
    pdf.set_font(FONT, size=9)
    with pdf.table(
        col_widths=WIDTHS,
        text_align=ALIGNS,
        headings_style=headings,
        borders_layout=TableBordersLayout.HORIZONTAL_LINES,
        line_height=5,
        padding=(1.2, 1.5),
        width=sum(WIDTHS),
        align="LEFT",
    ) as table:
        table.row(["Description", "Quantity", "Unit", "Unit price", f"Amount {view.record.currency}"])
        for group in view.groups:
            table.row().cell(f"{group.title} - {view.period_label}", colspan=len(WIDTHS), style=group_style)
            for _number, line in group.lines:
                table.row(
                    [
                        line.description,
                        view.quantity(line.quantity),
                        line.unit,
                        view.unit_price(line),
                        view.money(line.amount),
                    ]
                )
    pdf.ln(3)


def _totals(pdf: _Document, view: InvoiceView) -> None:
    record = view.record
    rows = [("Subtotal", view.money(record.subtotal))]
    if record.discount:
        rows.append((f"Discount {view.number(record.discount_percent)} %", view.money(-record.discount)))
        rows.append(("Net", view.money(record.net)))
    rows.append((view.tax_label, view.money(record.tax_amount)))
    for label, amount in rows:
        pdf.set_font(FONT, size=9)
        pdf.set_x(MARGIN + 60)
        pdf.cell(96, 6, label, align="R")
        pdf.cell(24, 6, amount, align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, "B", 11)
    pdf.set_x(MARGIN + 60)
    pdf.set_draw_color(*view.colour)
    pdf.cell(96, 8, f"Total {record.currency}", align="R", border="T")
    pdf.cell(24, 8, view.money(record.total), align="R", border="T", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if record.credit_applied:
        pdf.set_font(FONT, size=9)
        pdf.set_x(MARGIN + 60)
        pdf.cell(96, 6, "Paid from prepaid credit", align="R")
        pdf.cell(24, 6, view.money(-record.credit_applied), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font(FONT, "B", 11)
        pdf.set_x(MARGIN + 60)
        pdf.cell(96, 8, f"Amount due {record.currency}", align="R", border="T")
        pdf.cell(24, 8, view.money(record.amount_due), align="R", border="T", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(6)


def _payment(pdf: _Document, view: InvoiceView) -> None:
    if pdf.get_y() > pdf.h - 60:  # keep the heading with what it heads
        pdf.add_page()
    pdf.set_font(FONT, "B", 9)
    pdf.cell(0, 5, "Payment", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, size=9)
    for text in [*view.payment_lines, view.issuer.branding.terms]:
        pdf.multi_cell(0, 4.5, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
