"""Invoice documents from a built invoice: escaped HTML, CSV, PDF, and e-invoices only once issued."""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import facturx
import pytest
from lxml import etree

from api.delivery import invoice_message
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
UBL_INVOICE_XSD = Path(__file__).resolve().parents[2] / ".cache/ubl/invoice.xsd"
"""The OASIS UBL 2.1 Invoice schema, unpacked by ``make test`` (``tools/ubl``)."""


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
    assert "5,757.5" in html and "Invoice ACME-000007" in html


def test_csv_has_one_row_per_line_with_rounded_amounts():
    rows = render_csv(view()).splitlines()
    assert len(rows) == 1 + len(view().record.lines)
    assert rows[-1].endswith(",143.94,EUR,")


def test_issued_invoices_give_schema_valid_cii_and_ubl():
    assert facturx.xml_check_xsd(cii_xml(view()), flavor="factur-x", level="en16931")
    assert render_pdf(view()).startswith(b"%PDF")


@pytest.mark.skipif(
    not UBL_INVOICE_XSD.exists() and os.environ.get("CI") != "true",
    reason="the UBL 2.1 schemas are not fetched (make test fetches them; under CI their absence fails the run)",
)
def test_an_issued_invoice_gives_a_ubl_document_valid_against_the_oasis_ubl_21_schema():
    ubl = etree.fromstring(ubl_xml(view()))
    invoice_schema = etree.XMLSchema(etree.parse(str(UBL_INVOICE_XSD)))
    assert invoice_schema.validate(ubl), invoice_schema.error_log
    number = ubl.find("{urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2}ID")
    assert number is not None and number.text == "ACME-000007"
    unknown = etree.SubElement(ubl, "{urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2}Bogus")
    assert not invoice_schema.validate(ubl), "the schema is strict enough to refuse an unknown element"
    ubl.remove(unknown)


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


@pytest.mark.parametrize(
    ("status", "says"),
    [
        (InvoiceStatus.VOID, "This invoice is void: a credit note cancels it, and nothing is to be paid."),
        (InvoiceStatus.PAID, "Paid: 156.54 EUR, thank you."),
    ],
)
def test_a_paid_or_void_invoice_asks_for_nothing_and_owes_nothing(status, says):
    """Direct, October: 5757.5 vCPU-hours x 0.025 = 143.9375 -> 143.94, and the one-time 1.00 of
    the 31st: subtotal 144.94, 10 % off = 14.494 -> 14.49, net 130.45, VAT 20 % = 26.09, total
    156.54. Paid, it thanks for that; void, it asks nothing; either way nothing is outstanding."""
    shown = view(status)
    assert shown.payment_lines == [says]
    assert shown.terms is None and shown.record.outstanding == 0
    assert "Please pay" not in render_html(shown) and "IBAN" not in render_html(shown)
    issued = view(InvoiceStatus.ISSUED).record
    assert issued.outstanding == issued.amount_due == Decimal("156.54")


PAY_LINK = "https://billing.example/portal/pay/2026-10.acme.direct/" + "0f" * 16


@pytest.mark.parametrize(
    ("status", "first"),
    [
        (InvoiceStatus.PAYMENT_FAILED, "The card payment of this invoice failed."),
        (InvoiceStatus.REFUNDED, "The payment pi_1 was refunded: the invoice is to be paid again."),
    ],
)
def test_an_invoice_whose_card_payment_failed_or_was_refunded_asks_again_with_its_link(status, first):
    """Still 156.54 EUR to pay (see above), by transfer or through the link."""
    shown = replace(view(status), pay_link=PAY_LINK)
    shown = replace(shown, record=replace(shown.record, payment_reference="pi_1"))
    assert shown.payment_lines[0] == first
    assert shown.payment_lines[1].startswith("Please pay 156.54 EUR by ")
    assert shown.payment_lines[-1] == f"Pay by card: {PAY_LINK}"
    assert shown.record.outstanding == Decimal("156.54")


def test_the_payment_link_is_on_the_pdf_and_in_the_email_and_a_paid_invoice_names_its_payment():
    shown = replace(view(), pay_link=PAY_LINK)
    text = subprocess.run(
        ["pdftotext", "-layout", "-", "-"], input=render_pdf(shown), capture_output=True, check=True
    ).stdout.decode()
    assert PAY_LINK in text.replace("\n", "").replace(" ", "")
    message = invoice_message(shown, "billing@acme.example", "accounts@direct.example", b"%PDF")
    assert PAY_LINK in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert PAY_LINK in message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    paid = replace(view(InvoiceStatus.PAID), pay_link=None)
    paid = replace(paid, record=replace(paid.record, payment_reference="pi_9"))
    assert paid.payment_lines == ["Paid: 156.54 EUR (payment pi_9), thank you."]
