"""EN 16931 e-invoices: CII XML (embedded into the PDF as Factur-X) and UBL 2.1 (Peppol BIS 3.0).

The ``factur-x`` library builds both XML syntaxes from one dictionary keyed by EN 16931 business
terms (BT-1 invoice number, BG-25 lines...) and checks the result against the official XSD
schemas it ships; it also turns our PDF into a PDF/A-3 with the CII XML attached.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import facturx

from api.documents.pdf import render_pdf
from api.documents.view import InvoiceView
from billing.catalog import Party
from billing.invoices import DocumentType
from meterline.exceptions import InvalidQuery

LEVEL = "en16931"
STANDARD_RATE = "S"
UNIT_CODES = {"vCPU-hour": "HUR", "GiB-hour": "HUR", "GHz-hour": "HUR", "GB": "E34"}
"""UN/ECE Recommendation 20 codes; anything else is counted in units (C62)."""


def cii_xml(view: InvoiceView) -> bytes:
    return bytes(facturx.generate_cii_xml(_business_terms(view), level=LEVEL, check_schematron=False))


def ubl_xml(view: InvoiceView) -> bytes:
    return bytes(facturx.generate_ubl_xml(_business_terms(view), level=LEVEL, check_schematron=False))


def facturx_pdf(view: InvoiceView, pdf: bytes) -> bytes:
    """The invoice's PDF as PDF/A-3 with its CII XML embedded (Factur-X / ZUGFeRD)."""
    return bytes(
        facturx.generate_from_binary(
            pdf, cii_xml(view), flavor="factur-x", level=LEVEL, check_xsd=True, check_schematron=False
        )
    )


def pdf_for_buyer(view: InvoiceView) -> bytes:
    """The PDF a buyer gets: Factur-X once issued, a plain PDF for an invoice never issued (a
    draft, or a draft voided) or for tax-inclusive prices (which EN 16931 cannot state)."""
    pdf = render_pdf(view)
    if not view.record.number or view.record.tax_inclusive:
        return pdf
    return facturx_pdf(view, pdf)


def _business_terms(view: InvoiceView) -> dict[str, Any]:
    record, issuer, buyer = view.record, view.issuer, view.buyer
    if not record.number:
        raise InvalidQuery(f"invoice {record.invoice_id} was never issued: an e-invoice needs its number")
    if record.tax_inclusive:
        raise InvalidQuery("EN 16931 states net prices; this invoice's prices include tax")
    credit = record.document_type is DocumentType.CREDIT_NOTE
    sign = Decimal(-1) if credit else Decimal(1)
    rate = view.number(record.tax_rate_percent)
    terms: dict[str, Any] = {
        "BT-1": record.number,
        "BT-2": _midnight(view.issue_date),
        "BT-3": "381" if credit else "380",
        "BT-5": record.currency,
        "BT-9": _midnight(view.due_date),
        "BT-20": issuer.branding.terms,
        "BG-4": _party(issuer),
        "BG-7": _party(buyer),
        "BT-73": _midnight(view.period.first_day),
        "BT-74": _midnight(view.period.end_day - timedelta(days=1)),
        "BT-72": _midnight(view.period.end_day - timedelta(days=1)),
        "BT-106": view.money(sign * record.subtotal),
        "BT-107": view.money(sign * record.discount),
        "BT-109": view.money(sign * record.net),
        "BT-110": view.money(sign * record.tax_amount),
        "BT-112": view.money(sign * record.total),
        "BT-115": view.money(sign * record.amount_due),
        "BG-23": [
            {
                "BT-116": view.money(sign * record.net),
                "BT-117": view.money(sign * record.tax_amount),
                "BT-118": STANDARD_RATE,
                "BT-119": rate,
            }
        ],
        "BG-25": [
            {
                "BT-126": str(number),
                "BT-153": line.description,
                "BT-146": view.number(abs(line.unit_price)),
                "BT-129": view.quantity(sign * line.quantity),
                "BT-130": UNIT_CODES.get(line.unit, "C62"),
                "BT-151": STANDARD_RATE,
                "BT-152": rate,
                "BT-131": view.money(sign * line.amount),
            }
            for number, line in enumerate(record.lines, start=1)
        ],
    }
    if record.discount:
        terms["BG-20"] = [
            {
                "amount": view.money(sign * record.discount),
                "base_amount": view.money(sign * record.subtotal),
                "rate": view.number(record.discount_percent),
                "reason": "Discount",
                "vat_category_code": STANDARD_RATE,
                "vat_rate": rate,
            }
        ]
    if credit:
        terms["BG-3"] = [{"BT-25": record.credits_number}]
    if record.credit_applied:  # what prepaid credit paid: EN 16931's paid amount
        terms["BT-113"] = view.money(sign * record.credit_applied)
    return {key: value for key, value in terms.items() if value not in (None, "")}


def _party(party: Party) -> dict[str, Any]:
    fields = {
        "name": party.name,
        "vat_identifier": party.vat_id,
        "addr_l1": party.street,
        "postcode": party.postcode,
        "city": party.city,
        "country_code": party.country,
    }
    return {key: value for key, value in fields.items() if value}


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)
