"""The invoice as a PDF (fpdf2): the content of the HTML page, laid out for print on A4.

The fonts are embedded (Source Sans Pro, shipped as a Python package), as PDF/A-3 and thus
Factur-X require; descriptions wrap inside their column rather than being cut, figures never
wrap (their columns widen to the widest, up to a trillion), and the lines table repeats its
headings on each page. The totals and the payment block stay together, with the last lines
above them: a page never holds the payment block alone.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from importlib.resources import files
from typing import cast

from fpdf import FPDF, FontFace
from fpdf.enums import TableBordersLayout, XPos, YPos

from api.documents.view import InvoiceView
from billing.invoices import InvoiceLine

FONT = "SourceSans"
FONT_FILES = files("font_source_sans_pro") / "files"
MARGIN = 15.0
TEXT_WIDTH = 180.0
"""The A4 page less its margins."""
FIGURE_WIDTH = 24.0
"""The narrowest a figure's column is; a wider figure widens it, the description gives way."""
UNIT_WIDTH = 22.0
CELL_PADDING = 1.5
ALIGNS = ("LEFT", "RIGHT", "LEFT", "RIGHT", "RIGHT")
GREY = (90, 90, 90)
CARRIED_LINES = 3
"""Lines taken onto the last page with the totals, when the totals would not fit below the rest."""


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
        self.columns = _Columns.fitting(self, view)  # measured once: the lines table and the totals share them

    def footer(self) -> None:
        self.set_y(-14)
        self.set_font(FONT, size=8)
        self.set_text_color(*GREY)
        self.cell(0, 5, f"{self.view.issuer.name} - {self.view.title} - page {self.page_no()} of {{nb}}", align="C")


def render_pdf(view: InvoiceView) -> bytes:
    pdf = _up_to_totals(view, carried_lines=0)
    with pdf.offset_rendering() as trial:
        _closing(cast(_Document, trial), view)
    if trial.page_break_triggered and len(view.record.lines) > CARRIED_LINES:
        pdf = _up_to_totals(view, carried_lines=CARRIED_LINES)
    _closing(pdf, view)
    return bytes(pdf.output())


def _up_to_totals(view: InvoiceView, carried_lines: int) -> _Document:
    pdf = _Document(view)
    pdf.add_page()
    _header(pdf, view)
    _parties(pdf, view)
    _lines(pdf, view, carried_lines)
    return pdf


def _closing(pdf: _Document, view: InvoiceView) -> None:
    _totals(pdf, view)
    _payment(pdf, view)


@dataclass(frozen=True)
class _Columns:
    """The lines table's widths, in mm: each figure's column as wide as its widest figure."""

    description: float
    quantity: float
    unit: float
    unit_price: float
    amount: float

    @classmethod
    def fitting(cls, pdf: _Document, view: InvoiceView) -> _Columns:
        pdf.set_font(FONT, size=9)

        def widest(texts: list[str]) -> float:
            return max(FIGURE_WIDTH, *(pdf.get_string_width(text) + 2 * CELL_PADDING + 1 for text in texts))

        lines = view.record.lines
        quantity = widest([view.shown_quantity(line.quantity) for line in lines])
        unit_price = widest([view.shown_unit_price(line) for line in lines])
        amount = widest([view.shown_money(line.amount) for line in lines] + [f"Amount {view.record.currency}"])
        return cls(TEXT_WIDTH - quantity - UNIT_WIDTH - unit_price - amount, quantity, UNIT_WIDTH, unit_price, amount)

    @property
    def widths(self) -> tuple[float, ...]:
        return (self.description, self.quantity, self.unit, self.unit_price, self.amount)


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
        ("Due", "-" if view.is_credit_note or view.is_draft else f"{view.due_date:%d %B %Y}"),
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


def _lines(pdf: _Document, view: InvoiceView, carried_lines: int) -> None:
    """The lines by product family; the last ``carried_lines`` on a page of their own, under
    their family's title, to go with the totals."""
    rows: list[tuple[str, InvoiceLine | None]] = []
    for group in view.groups:
        rows.append((group.title, None))
        rows += [(group.title, line) for _number, line in group.lines]
    if carried_lines:
        first_carried = len(rows) - carried_lines
        _table(pdf, view, rows[:first_carried])
        pdf.add_page()
        title, line = rows[first_carried]
        continued = [] if line is None else [(f"{title} (continued)", None)]
        _table(pdf, view, continued + rows[first_carried:])
    else:
        _table(pdf, view, rows)
    pdf.ln(3)


def _table(pdf: _Document, view: InvoiceView, rows: list[tuple[str, InvoiceLine | None]]) -> None:
    colour = view.colour
    headings = FontFace(emphasis="BOLD", color=(255, 255, 255), fill_color=colour, size_pt=9)
    group_style = FontFace(emphasis="BOLD", fill_color=(238, 241, 245), size_pt=9)
    widths = pdf.columns.widths
    with pdf.table(
        col_widths=widths,
        text_align=ALIGNS,
        headings_style=headings,
        borders_layout=TableBordersLayout.HORIZONTAL_LINES,
        line_height=5,
        padding=(1.2, CELL_PADDING),
        width=sum(widths),
        align="LEFT",
    ) as table:
        table.row(["Description", "Quantity", "Unit", "Unit price", f"Amount {view.record.currency}"])
        for title, line in rows:
            if line is None:
                table.row().cell(f"{title} - {view.period_label}", colspan=len(widths), style=group_style)
            else:
                table.row(
                    [
                        line.description,
                        view.shown_quantity(line.quantity),
                        line.unit,
                        view.shown_unit_price(line),
                        view.shown_money(line.amount),
                    ]
                )


def _totals(pdf: _Document, view: InvoiceView) -> None:
    """Labels right-aligned against the figures, the figures as wide as the largest needs."""
    record = view.record
    rows = [("Subtotal", view.shown_money(record.subtotal))]
    if record.discount:
        rows.append((f"Discount {view.number(record.discount_percent)} %", view.shown_money(-record.discount)))
        rows.append(("Net", view.shown_money(record.net)))
    rows.append((view.tax_label, view.shown_money(record.tax_amount)))
    totals = [(f"Total {record.currency}", view.shown_money(record.total))]
    if record.credit_applied:
        totals.append((f"Amount due {record.currency}", view.shown_money(record.amount_due)))
    lines_figure = pdf.columns.amount
    pdf.set_font(FONT, "B", 11)
    figure = max(lines_figure, *(pdf.get_string_width(amount) + 2 * CELL_PADDING + 1 for _label, amount in totals))
    label = TEXT_WIDTH - figure
    for text, amount in rows:
        pdf.set_font(FONT, size=9)
        pdf.cell(label, 6, text, align="R")
        pdf.cell(figure, 6, amount, align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_draw_color(*view.colour)
    _total(pdf, figure, *totals[0])
    if record.credit_applied:
        pdf.set_font(FONT, size=9)
        pdf.cell(label, 6, "Paid from prepaid credit", align="R")
        pdf.cell(figure, 6, view.shown_money(-record.credit_applied), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        _total(pdf, figure, *totals[1])
    pdf.ln(6)


def _total(pdf: _Document, figure_width: float, label: str, amount: str) -> None:
    pdf.set_font(FONT, "B", 11)
    pdf.set_x(MARGIN + TEXT_WIDTH - figure_width - 96)
    pdf.cell(96, 8, label, align="R", border="T")
    pdf.cell(figure_width, 8, amount, align="R", border="T", new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _payment(pdf: _Document, view: InvoiceView) -> None:
    pdf.set_font(FONT, "B", 9)
    pdf.cell(0, 5, "Payment", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, size=9)
    for text in [*view.payment_lines, *([view.terms] if view.terms else [])]:
        pdf.multi_cell(0, 4.5, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
