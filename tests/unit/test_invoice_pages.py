"""The printed invoice: every document kind rendered to pages whose text stays on the page.

poppler (from the OS packages) reads each word's box back out of the PDF: a word outside the
margins, or two words drawn over each other, is text that overflowed its place. Rendered pages
are kept in ``test-artifacts/invoices/`` to look at.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import replace
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import pytest
import yaml

from api.documents.einvoice import pdf_for_buyer
from api.documents.pdf import render_pdf
from api.documents.view import InvoiceView
from billing.catalog import Catalog
from billing.invoices import DocumentType, Invoice, InvoiceStatus, UsageTotal, build_invoices
from billing.periods import Period
from billing.records import InvoiceRecord, credit_note_id
from schemas.meters import Meter

ARTIFACTS = Path("test-artifacts/invoices")


def _catalog() -> Catalog:
    """The demo catalog, where Customer 00002 also pays 0.0200 per vCPU-hour and gets inbound
    traffic priced 0.0000 (both prices to be shown as the price list writes them)."""
    document = yaml.safe_load(Path("billing/catalog.yaml").read_text())
    huge = next(customer for customer in document["customers"] if customer["id"] == "cust-00002")
    huge["plans"] = [
        {"meter": "vcpu_hours", "model": "per_unit", "unit_price": "0.0200", "effective_from": "2020-01-01T00:00:00Z"},
        {"meter": "net_rx_gb", "model": "per_unit", "unit_price": "0.0000", "effective_from": "2020-01-01T00:00:00Z"},
    ]
    return Catalog.model_validate(document)


CATALOG = _catalog()
OCTOBER = Period.parse("2026-10")
ISSUED_AT = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
A4_POINTS = (595.28, 841.89)
MARGIN_POINTS = 28.0
"""10 mm: the layout keeps 15 mm, so a word beyond 10 mm has run off its column."""

pytestmark = pytest.mark.skipif(
    shutil.which("pdftotext") is None and os.environ.get("CI") != "true",
    reason="poppler-utils is not installed (make test installs it; under CI its absence fails the run)",
)


def usage(customer_id: str) -> list[UsageTotal]:
    """Some of every meter the demo catalog prices, for one customer."""
    quantities = {
        (Meter.VCPU_HOURS, ""): "5757.5",
        (Meter.RAM_GIB_HOURS, ""): "11515",
        (Meter.DISK_GIB_HOURS, "ssd"): "74400",
        (Meter.DISK_GIB_HOURS, "hdd"): "186000",
        (Meter.NET_TX_GB, ""): "12500.25",
        (Meter.VDC_CPU_GHZ_HOURS, "allocation_pool"): "2000",
        (Meter.XAAS_UNIT_HOURS, "backup_gb"): "223200",
        (Meter.XAAS_UNIT_HOURS, "dbaas_instance"): "1488",
        (Meter.XAAS_PEAK_UNITS, "windows_server_licence"): "7",
    }
    return [
        UsageTotal(customer_id, meter.value, dimension, meter.unit, Fraction(q), OCTOBER.start, OCTOBER.end)
        for (meter, dimension), q in quantities.items()
    ]


def huge_usage() -> list[UsageTotal]:
    """A customer whose figures run to 11 digits: 600,000,000,000 vCPU-hours at 0.0200 =
    12,000,000,000.00, and 1,234,567 GB in at 0.0000."""
    return [
        UsageTotal("cust-00002", "vcpu_hours", "", "vCPU-hour", Fraction(600_000_000_000), OCTOBER.start, OCTOBER.end),
        UsageTotal("cust-00002", "net_rx_gb", "", "GB", Fraction(1_234_567), OCTOBER.start, OCTOBER.end),
    ]


def invoices() -> dict[str, Invoice]:
    everyone = [*usage("cust-00001"), *usage("cust-00003"), *usage("cust-00011"), *huge_usage()]
    return {invoice.invoice_id: invoice for invoice in build_invoices(CATALOG, OCTOBER, everyone)}


def issued(invoice: Invoice, number: str) -> InvoiceRecord:
    draft = InvoiceRecord.draft(invoice, 1, ISSUED_AT)
    return replace(draft, status=InvoiceStatus.ISSUED, number=number, issued_at=ISSUED_AT)


def documents() -> dict[str, InvoiceView]:
    built = invoices()
    direct = issued(built["2026-10.acme.cust-00001"], "ACME-000042")
    partner = issued(built["2026-10.acme.northwind"], "ACME-000043")
    credit = replace(
        direct,
        invoice_id=credit_note_id(direct.invoice_id),
        document_type=DocumentType.CREDIT_NOTE,
        number="ACME-000044",
        credits_number=direct.number,
        lines=tuple(replace(line, quantity=-line.quantity, amount=-line.amount) for line in direct.lines),
        subtotal=-direct.subtotal,
        discount=-direct.discount,
        net=-direct.net,
        tax_amount=-direct.tax_amount,
        total=-direct.total,
    )
    resold = InvoiceRecord.draft(built["2026-10.northwind.cust-00003"], 1, ISSUED_AT)
    huge = issued(built["2026-10.acme.cust-00002"], "ACME-000045")
    return {
        "invoice": InvoiceView.of(direct, CATALOG),
        "huge-invoice": InvoiceView.of(huge, CATALOG),
        "partner-invoice": InvoiceView.of(partner, CATALOG),
        "credit-note": InvoiceView.of(credit, CATALOG),
        "draft-from-partner": InvoiceView.of(resold, CATALOG),
    }


def words(pdf: Path) -> list[tuple[int, float, float, float, float, str]]:
    return words_of(pdf.read_bytes())


def words_of(pdf: bytes) -> list[tuple[int, float, float, float, float, str]]:
    """(page, x_min, y_min, x_max, y_max, text) of every word, in points."""
    html = subprocess.run(["pdftotext", "-bbox", "-", "-"], input=pdf, check=True, capture_output=True).stdout.decode()
    found = []
    for page, content in enumerate(re.split(r"<page ", html)[1:], start=1):
        for box in re.finditer(
            r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">(.*?)</word>', content
        ):
            found.append((page, *(float(box.group(n)) for n in range(1, 5)), box.group(5)))
    return found


@pytest.mark.parametrize("kind", ["invoice", "huge-invoice", "partner-invoice", "credit-note", "draft-from-partner"])
def test_each_document_kind_prints_within_its_page_with_embedded_fonts(kind, tmp_path):
    view = documents()[kind]
    pdf = tmp_path / f"{kind}.pdf"
    pdf.write_bytes(pdf_for_buyer(view) if kind != "draft-from-partner" else render_pdf(view))

    placed = words(pdf)
    assert placed, "no text found"
    width, height = A4_POINTS
    outside = [w for w in placed if w[1] < MARGIN_POINTS or w[3] > width - MARGIN_POINTS or w[4] > height - 10]
    assert not outside, f"text beyond the margins: {outside[:5]}"
    overlapping = [
        (a[5], b[5])
        for i, a in enumerate(placed)
        for b in placed[i + 1 :]
        if a[0] == b[0] and a[1] < b[3] - 0.5 and b[1] < a[3] - 0.5 and a[2] < b[4] - 0.5 and b[2] < a[4] - 0.5
    ]
    assert not overlapping, f"words drawn over each other: {overlapping[:5]}"
    text = " ".join(w[5] for w in placed)
    assert view.shown_money(view.record.total) in text and view.title.split()[-1] in text
    payment_page = next(page for page, *_box, word in placed if word == "Payment")
    assert any(page == payment_page and word == "Description" for page, *_box, word in placed), (
        "the payment block is on a page without the lines above it"
    )

    fonts = subprocess.run(["pdffonts", str(pdf)], check=True, capture_output=True, text=True).stdout.splitlines()[2:]
    assert fonts and all(line.split()[-5] == "yes" for line in fonts), f"a font is not embedded: {fonts}"

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    subprocess.run(["pdftoppm", "-png", "-r", "60", str(pdf), str(ARTIFACTS / kind)], check=True)


def test_the_printed_invoice_shows_what_a_billing_user_expects():
    """Names, not meter ids; prices at the price list's precision; payment details; the credit
    note names the invoice it cancels."""
    views = documents()
    pdf_text = {kind: _text(render_pdf(view)) for kind, view in views.items()}
    invoice = pdf_text["invoice"]
    for expected in (
        "Acme Cloud SAS",
        "FR40123456789",
        "Billed to",
        "Customer 00001",
        "Virtual machines",
        "Disk storage (ssd)",
        "0.0002",
        "FR76 3000 6000 0112 3456 7890 189",
        "Due",
        "1 to 31 October 2026",
        "Late payments bear interest",
    ):
        assert expected in invoice, expected
    assert "disk_gib_hours" not in invoice
    credit_note = pdf_text["credit-note"]
    assert "Cancels invoice" in credit_note and "ACME-000042" in credit_note
    assert "Late payments" not in credit_note and "Please pay" not in credit_note
    draft = pdf_text["draft-from-partner"]
    assert "DRAFT" in draft and "Northwind IT GmbH" in draft
    assert "Please pay" not in draft and "Reference:" not in draft and "IBAN" not in draft
    assert "nothing is to be paid" in draft


def test_the_huge_invoice_groups_figures_by_thousands_and_keeps_the_price_list_precision():
    """600,000,000,000 vCPU-hours x 0.0200 = 12,000,000,000.00; 1,234,567 GB x 0.0000 = 0.00.
    Customer 00002 has no discount and no fee in October (its firewall starts in November):
    subtotal 12,000,000,000.00, VAT 20 % = 2,400,000,000.00, total 14,400,000,000.00."""
    view = documents()["huge-invoice"]
    text = _text(render_pdf(view))
    for expected in ("600,000,000,000", "12,000,000,000.00", "1,234,567", "0.0200", "0.0000", "14,400,000,000.00"):
        assert expected in text, expected


@pytest.mark.parametrize("lines", range(24, 44))
def test_the_payment_block_never_stands_alone_on_a_page(lines):
    """Whatever the number of lines, the totals and the payment block share a page with lines."""
    direct = documents()["invoice"]
    line = direct.record.lines[0]
    view = replace(direct, record=replace(direct.record, lines=(line,) * lines))
    by_page: dict[int, set[str]] = {}
    for page, *_box, word in words_of(render_pdf(view)):
        by_page.setdefault(page, set()).add(word)
    last = by_page[max(by_page)]
    assert {"Payment", "Total", "Description"} <= last, f"{lines} lines: the last page holds only {sorted(last)[:12]}"


def _text(pdf: bytes) -> str:
    return subprocess.run(["pdftotext", "-", "-"], input=pdf, check=True, capture_output=True).stdout.decode()
