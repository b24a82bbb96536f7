"""Invoices and credit notes as stored, and the steps of their lifecycle, as pure functions.

draft -> issued -> paid | void. Issuing gives the issuer's next number (``PREFIX-000042``, one
gap-free sequence per issuer) and is allowed once the period has ended; voiding an issued
invoice keeps its number and issues a credit note that cancels it, numbered in turn. The
adapters store these records; the rules are here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal

from billing.invoices import DocumentType, Invoice, InvoiceLine, InvoiceStatus
from billing.periods import Period
from meterline.exceptions import InvoiceStateError


def credit_note_id(invoice_id: str) -> str:
    return f"{invoice_id}.credit"


def invoice_number(prefix: str, sequence: int) -> str:
    return f"{prefix}-{sequence:06d}"


def check_period_ended(period: str, now: datetime) -> None:
    """A month is invoiced once it is over: before that its drafts are previews."""
    end = Period.parse(period).end
    if now < end:
        raise InvoiceStateError(
            f"period {period} has not ended: its drafts can be previewed, and issued from {end.isoformat()}"
        )


@dataclass(frozen=True)
class InvoiceRecord:
    """An invoice or credit note as stored: its header, and its lines once loaded.

    The header's fields are the stored columns (``storage.ledger`` derives
    its table schema from them)."""

    invoice_id: str
    revision: int
    document_type: DocumentType
    status: InvoiceStatus
    period: str
    issuer_id: str
    buyer_id: str
    buyer_name: str
    number: str
    sequence: int
    credits_number: str
    currency: str
    covered_customers: list[str]
    discount_percent: Decimal
    tax_name: str
    tax_rate_percent: Decimal
    tax_inclusive: bool
    subtotal: Decimal
    discount: Decimal
    net: Decimal
    tax_amount: Decimal
    total: Decimal
    closed_at: datetime
    """When the close that built it ran: its lines bill the usage stored by then."""
    issued_at: datetime | None
    updated_at: datetime
    line_count: int
    """How many lines the revision has: lines beyond it were left by a write cut short."""
    notes: str = ""
    """Said by the close, e.g. that it was forced while some usage was missing."""
    credit_applied: Decimal = Decimal(0)
    """What the buyer's prepaid credit paid of ``total`` (rounded to the cent)."""
    payment_reference: str = ""
    """The gateway's reference of the payment that paid it (or was refunded): empty until then."""
    lines: tuple[InvoiceLine, ...] = field(default=(), compare=False)

    @classmethod
    def draft(cls, invoice: Invoice, revision: int, now: datetime, notes: str = "") -> InvoiceRecord:
        return cls(
            invoice_id=invoice.invoice_id,
            revision=revision,
            document_type=DocumentType.INVOICE,
            status=InvoiceStatus.DRAFT,
            period=invoice.period.name,
            issuer_id=invoice.issuer.id,
            buyer_id=invoice.buyer_id,
            buyer_name=invoice.buyer_name,
            number="",
            sequence=0,
            credits_number="",
            currency=invoice.currency,
            covered_customers=list(invoice.covered_customers),
            discount_percent=invoice.discount_percent,
            tax_name=invoice.tax.name,
            tax_rate_percent=invoice.tax.rate_percent,
            tax_inclusive=invoice.tax.inclusive,
            subtotal=invoice.subtotal,
            discount=invoice.discount,
            net=invoice.net,
            tax_amount=invoice.tax_amount,
            total=invoice.total,
            closed_at=now,
            issued_at=None,
            updated_at=now,
            line_count=len(invoice.lines),
            notes=notes,
            lines=invoice.lines,
        )

    @property
    def amount_due(self) -> Decimal:
        """What the document asks the buyer to pay: the total less what its prepaid credit paid."""
        return self.total - self.credit_applied

    @property
    def outstanding(self) -> Decimal:
        """What the buyer still owes now: nothing once paid, or void (its credit note cancels it)."""
        return Decimal(0) if self.status in (InvoiceStatus.PAID, InvoiceStatus.VOID) else self.amount_due

    def becoming(self, target: InvoiceStatus, now: datetime) -> InvoiceRecord:
        """The record moved to ``target``, or InvoiceStateError saying why it cannot move.

        Issuing is for a period that has ended: before that its drafts are previews."""
        if not self.status.can_become(target):
            raise InvoiceStateError(f"invoice {self.invoice_id} is {self.status}; it cannot become {target}")
        if target is InvoiceStatus.ISSUED and self.document_type is DocumentType.INVOICE:
            check_period_ended(self.period, now)
        return replace(self, status=target, updated_at=now)

    def numbered(self, prefix: str, sequence: int, now: datetime) -> InvoiceRecord:
        """Issued with the ``sequence``-th number of its issuer."""
        return replace(
            self,
            status=InvoiceStatus.ISSUED,
            sequence=sequence,
            number=invoice_number(prefix, sequence),
            issued_at=now,
            updated_at=now,
        )

    def credit_note(self, now: datetime) -> InvoiceRecord:
        """The credit note cancelling this issued invoice: every line and figure negated, to be
        numbered in its issuer's sequence."""
        return replace(
            self,
            invoice_id=credit_note_id(self.invoice_id),
            revision=1,
            document_type=DocumentType.CREDIT_NOTE,
            status=InvoiceStatus.DRAFT,
            number="",
            sequence=0,
            credits_number=self.number,
            subtotal=-self.subtotal,
            discount=-self.discount,
            net=-self.net,
            tax_amount=-self.tax_amount,
            total=-self.total,
            credit_applied=-self.credit_applied,
            closed_at=now,
            updated_at=now,
            lines=tuple(replace(line, quantity=-line.quantity, amount=-line.amount) for line in self.lines),
        )
