"""Invoice documents from a built invoice: escaped HTML, CSV, PDF, and e-invoices only once issued."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from fractions import Fraction

import facturx
import pytest

from api.documents.einvoice import cii_xml, pdf_for_buyer, ubl_xml
from api.documents.html import render_html
from api.documents.pdf import render_pdf
from api.documents.table import render_csv
from api.documents.view import InvoiceView
from billing.catalog import Catalog
from billing.invoices import InvoiceStatus, UsageTotal, build_invoices
from billing.periods import Period
from billing.records import InvoiceRecord
from meterline.exceptions import InvalidQuery
from tests.factories import catalog_document

NOW = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)


def view(status: InvoiceStatus = InvoiceStatus.ISSUED, number: str = "ACME-000007") -> InvoiceView:
    document = catalog_document()
    document["customers"][0]["name"] = "<script>alert(1)</script> SAS"
    catalog = Catalog.model_validate(document)
    october = Period.parse("2026-10")
    usage = [UsageTotal("direct", "vcpu_hours", "", "vCPU-hour", Fraction("5757.5"), october.start, october.end)]
    invoice = next(i for i in build_invoices(catalog, october, usage) if i.buyer_id == "direct")
    record = replace(InvoiceRecord.draft(invoice, 1, NOW), status=status, number=number, issued_at=NOW)
    return InvoiceView.of(record, catalog)


def test_html_escapes_catalog_text_and_shows_people_quantities():
    html = render_html(view())
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    assert "5757.5" in html and "Invoice ACME-000007" in html


def test_csv_has_one_row_per_line_with_rounded_amounts():
    rows = render_csv(view()).splitlines()
    assert len(rows) == 1 + len(view().record.lines)
    assert rows[-1].endswith(",143.94,EUR,")


def test_issued_invoices_give_schema_valid_cii_and_ubl():
    assert facturx.xml_check_xsd(cii_xml(view()), flavor="factur-x", level="en16931")
    assert b"ACME-000007" in ubl_xml(view())
    assert render_pdf(view()).startswith(b"%PDF")


@pytest.mark.parametrize("status", [InvoiceStatus.DRAFT, InvoiceStatus.VOID])
def test_an_invoice_never_issued_has_no_e_invoice_and_a_plain_pdf(status):
    """A draft, and a draft voided before issue, have no number: asking for their e-invoice is a
    400 with the reason (a voided draft answered 500, found by schemathesis)."""
    never_issued = view(status, number="")
    for e_invoice in (cii_xml, ubl_xml):
        with pytest.raises(InvalidQuery, match="never issued"):
            e_invoice(never_issued)
    assert b"/EmbeddedFile" not in pdf_for_buyer(never_issued), "no CII XML inside: a plain PDF"
    assert b"/EmbeddedFile" in pdf_for_buyer(view()), "an issued invoice's PDF carries its CII XML"
