"""What every rendering of an invoice needs: the stored invoice, both parties, figures for people.

The HTML page, the PDF and the e-mail read the same view, so they show the same figures: lines
grouped by product family, quantities and unit prices at the precision the price list gives
them, money in the currency's minor unit. People read figures grouped by thousands
(``shown_money``: 12,345.60); CSV and e-invoices take them plain (``money``: 12345.60).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from itertools import groupby

from billing.catalog import Catalog, Issuer, Party
from billing.invoices import DocumentType, InvoiceLine, InvoiceStatus, LineKind
from billing.money import decimal_places, minor_unit, round_money
from billing.periods import Period
from billing.records import InvoiceRecord
from schemas.meters import Meter

QUANTITY_PLACES = Decimal("0.0001")
IMAGE_TYPES = ("image/png", "image/jpeg")


@dataclass(frozen=True)
class LineGroup:
    """Lines of one product family, numbered as on the stored invoice."""

    title: str
    lines: list[tuple[int, InvoiceLine]]


@dataclass(frozen=True)
class InvoiceView:
    record: InvoiceRecord
    issuer: Issuer
    buyer: Party
    pay_link: str | None = None
    """Where the buyer pays the invoice by card (``api.payments``), while it is owed."""

    @classmethod
    def of(cls, record: InvoiceRecord, catalog: Catalog, pay_link: str | None = None) -> InvoiceView:
        issuer, buyer = catalog.issuer(record.issuer_id), catalog.party(record.buyer_id)
        return cls(record=record, issuer=issuer, buyer=buyer, pay_link=pay_link)

    @property
    def is_credit_note(self) -> bool:
        return self.record.document_type is DocumentType.CREDIT_NOTE

    @property
    def is_draft(self) -> bool:
        return self.record.status is InvoiceStatus.DRAFT

    @property
    def title(self) -> str:
        kind = "Credit note" if self.is_credit_note else "Invoice"
        return (
            f"{kind} {self.record.number}" if self.record.number else f"Draft {kind.lower()} {self.record.invoice_id}"
        )

    @property
    def issue_date(self) -> date:
        return (self.record.issued_at or self.record.closed_at).date()

    @property
    def due_date(self) -> date:
        return self.issue_date + timedelta(days=self.issuer.payment.due_days)

    @property
    def period(self) -> Period:
        return Period.parse(self.record.period)

    @property
    def period_label(self) -> str:
        """``1 to 31 October 2026``: the days billed, both included."""
        last = self.period.end_day - timedelta(days=1)
        return f"{self.period.first_day.day} to {last.day} {last:%B %Y}"

    @property
    def groups(self) -> list[LineGroup]:
        """Lines by product family, in the order the invoice lists them."""
        numbered = list(enumerate(self.record.lines, start=1))
        return [LineGroup(title, list(lines)) for title, lines in groupby(numbered, key=lambda item: _family(item[1]))]

    @property
    def tax_label(self) -> str:
        record = self.record
        included = " (included)" if record.tax_inclusive else ""
        return f"{record.tax_name} {self.number(record.tax_rate_percent)} % on {self.shown_money(record.net)}{included}"

    @property
    def payment_lines(self) -> list[str]:
        """How to pay, as the issuer's catalog entry says; for a credit note or a draft, why
        there is nothing to pay."""
        if self.is_credit_note:
            return [f"This credit note cancels invoice {self.record.credits_number}."]
        if self.is_draft:
            return ["This preview is not an invoice: nothing is to be paid until the invoice is issued."]
        if self.record.status is InvoiceStatus.VOID:
            return ["This invoice is void: a credit note cancels it, and nothing is to be paid."]
        reference = self.record.payment_reference
        if self.record.status is InvoiceStatus.PAID:
            by = f" (payment {reference})" if reference else ""
            return [f"Paid: {self.shown_money(self.record.amount_due)} {self.record.currency}{by}, thank you."]
        payment = self.issuer.payment
        lines = [
            f"Please pay {self.shown_money(self.record.amount_due)} {self.record.currency} by {self.due_date:%d %B %Y}."
        ]
        if self.record.status is InvoiceStatus.PAYMENT_FAILED:
            lines.insert(0, "The card payment of this invoice failed.")
        if self.record.status is InvoiceStatus.REFUNDED:
            lines.insert(0, f"The payment {reference} was refunded: the invoice is to be paid again.")
        if self.pay_link:
            lines.append(f"Pay by card: {self.pay_link}")
        if payment.iban:
            bank = f" ({payment.bank})" if payment.bank else ""
            bic = f", BIC {payment.bic}" if payment.bic else ""
            lines.append(f"Bank transfer to IBAN {grouped_iban(payment.iban)}{bic}{bank}.")
            lines.append(f"Reference: {self.record.number or self.record.invoice_id}.")
        if payment.link:
            lines.append(f"Pay online: {payment.link}")
        return lines

    @property
    def asks_payment(self) -> bool:
        """An issued invoice, not yet paid: a credit note, a draft or a void invoice asks none."""
        return not self.is_credit_note and self.record.status.owed

    @property
    def terms(self) -> str | None:
        """The issuer's payment terms, on what is to be paid only (no late-payment clause on a
        credit note, a draft, or a void or paid invoice)."""
        return self.issuer.branding.terms if self.asks_payment else None

    @property
    def logo(self) -> tuple[str, bytes] | None:
        """The issuer's logo as (media type, bytes) when its URI carries the image itself."""
        uri = self.issuer.branding.logo_url or ""
        header, _, data = uri.partition(",")
        media_type = header.removeprefix("data:").removesuffix(";base64")
        if not header.startswith("data:") or media_type not in IMAGE_TYPES:
            return None
        try:
            return media_type, base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            return None

    @property
    def colour(self) -> tuple[int, int, int]:
        hex_colour = self.issuer.branding.colour
        return int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16)

    @staticmethod
    def address(party: Party) -> list[str]:
        """A party's postal address as lines: street, then postcode, city and country."""
        town = " ".join(part for part in (party.postcode, party.city, party.country) if part)
        return [line for line in (party.street, town) if line]

    def money(self, amount: Decimal) -> str:
        """An amount in the invoice currency's minor unit, plain: 1234.5 EUR -> '1234.50'."""
        return f"{round_money(amount, self.record.currency):f}"

    def shown_money(self, amount: Decimal) -> str:
        """An amount for people, grouped by thousands: 1234.5 EUR -> '1,234.50'."""
        return f"{round_money(amount, self.record.currency):,f}"

    def shown_unit_price(self, line: InvoiceLine) -> str:
        """As precise as the price list wrote it (0.0200 per vCPU-hour, 0.0002 per GiB-hour), at
        least to the minor unit (30.00), grouped by thousands."""
        places = max(decimal_places(line.unit_price), decimal_places(minor_unit(self.record.currency)))
        return f"{line.unit_price:,.{places}f}"

    @classmethod
    def shown_quantity(cls, value: Decimal) -> str:
        """A quantity for people, grouped by thousands: 11,515 GiB-hours."""
        return f"{cls._rounded_quantity(value):,f}"

    @classmethod
    def quantity(cls, value: Decimal) -> str:
        """A quantity, plain: at most 4 places (hours of 5-minute samples carry 12)."""
        return f"{cls._rounded_quantity(value):f}"

    @staticmethod
    def _rounded_quantity(value: Decimal) -> Decimal:
        return value.quantize(QUANTITY_PLACES).normalize()

    @staticmethod
    def number(value: Decimal) -> str:
        """A quantity or rate without trailing zeros: 12.500000000000 -> '12.5'."""
        return f"{value.normalize():f}"


def grouped_iban(iban: str) -> str:
    """An IBAN as printed for people, in groups of four: FR76 3000 6000 ..."""
    compact = iban.replace(" ", "")
    return " ".join(compact[start : start + 4] for start in range(0, len(compact), 4))


def _family(line: InvoiceLine) -> str:
    if line.kind is LineKind.USAGE and line.meter:
        return Meter(line.meter).family
    return {
        LineKind.RECURRING: "Subscriptions",
        LineKind.ONE_TIME: "One-time charges",
        LineKind.ADJUSTMENT: "Adjustments to earlier periods",
    }.get(line.kind, "Usage")
