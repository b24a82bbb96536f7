"""Response bodies of the invoicing endpoints; money as fixed-point decimal strings."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from api.models import FixedPoint
from billing.invoices import InvoiceLine
from billing.mailing import Delivery
from billing.money import round_money
from billing.records import InvoiceRecord
from storage.connection import as_utc


class InvoiceLineOut(BaseModel):
    line_no: int
    kind: str
    description: str
    quantity: FixedPoint
    unit: str
    unit_price: FixedPoint
    amount: FixedPoint = Field(description="Rounded to the currency's minor unit")
    meter: str
    dimension: str
    adjusts_period: str
    usage_url: str | None = Field(description="Hourly usage behind a usage line; it adds up to the line")

    @classmethod
    def of(cls, invoice_id: str, line_no: int, line: InvoiceLine, currency: str) -> InvoiceLineOut:
        usage = f"/v1/invoices/{invoice_id}/lines/{line_no}/usage" if line.meter else None
        return cls(
            line_no=line_no,
            kind=line.kind.value,
            description=line.description,
            quantity=line.quantity.normalize(),
            unit=line.unit,
            unit_price=line.unit_price.normalize(),
            amount=round_money(line.amount, currency),
            meter=line.meter,
            dimension=line.dimension,
            adjusts_period=line.adjusts_period,
            usage_url=usage,
        )


class InvoiceOut(BaseModel):
    invoice_id: str
    document_type: str
    status: str
    number: str = Field(description="Gap-free per issuer; empty while the invoice is a draft")
    credits_number: str = Field(description="For a credit note: the number of the invoice it cancels")
    period: str
    issuer_id: str
    buyer_id: str
    buyer_name: str
    currency: str
    covered_customers: list[str]
    subtotal: FixedPoint
    discount: FixedPoint
    net: FixedPoint
    tax_name: str
    tax_rate_percent: FixedPoint
    tax_inclusive: bool
    tax_amount: FixedPoint
    total: FixedPoint
    credit_applied: FixedPoint = Field(description="What the buyer's prepaid credit paid of the total (tax included)")
    amount_due: FixedPoint = Field(description="What the document asks to be paid: total - credit_applied")
    outstanding: FixedPoint = Field(description="What the buyer still owes now: 0 once paid or void, else amount_due")
    payment_reference: str = Field(description="The gateway's reference of the card payment that paid it")
    closed_at: datetime
    issued_at: datetime | None
    notes: str = Field(default="", description="What the close said, e.g. that it was forced with usage missing")
    lines: list[InvoiceLineOut] | None = Field(default=None, description="Only on a single invoice")

    @classmethod
    def of(cls, record: InvoiceRecord, with_lines: bool = False) -> InvoiceOut:
        money = {
            name: round_money(getattr(record, name), record.currency)
            for name in (
                "subtotal",
                "discount",
                "net",
                "tax_amount",
                "total",
                "credit_applied",
                "amount_due",
                "outstanding",
            )
        }
        return cls(
            invoice_id=record.invoice_id,
            document_type=record.document_type.value,
            status=record.status.value,
            number=record.number,
            credits_number=record.credits_number,
            period=record.period,
            issuer_id=record.issuer_id,
            buyer_id=record.buyer_id,
            buyer_name=record.buyer_name,
            currency=record.currency,
            covered_customers=record.covered_customers,
            tax_name=record.tax_name,
            tax_rate_percent=record.tax_rate_percent.normalize(),
            tax_inclusive=record.tax_inclusive,
            closed_at=as_utc(record.closed_at),
            issued_at=as_utc(record.issued_at) if record.issued_at else None,
            notes=record.notes,
            payment_reference=record.payment_reference,
            lines=[
                InvoiceLineOut.of(record.invoice_id, n, line, record.currency)
                for n, line in enumerate(record.lines, start=1)
            ]
            if with_lines
            else None,
            **money,
        )


class CloseOut(BaseModel):
    period: str
    drafted: int = Field(description="Invoices written as drafts (or new revisions of drafts)")
    kept: int = Field(description="Invoices left alone: already issued, paid or void")
    voided: int = Field(description="Drafts of an earlier close that nothing bills any more (a buyer left), voided")
    unbilled_customers: list[str] = Field(description="Rated usage from customers the catalog does not hold")
    unpriced: dict[str, str] = Field(
        description="Buyers whose invoice the catalog cannot price (no plan or fee in force in their currency), "
        "with the reason: left out of this close, billed once the catalog is put right"
    )


class LineUsageRow(BaseModel):
    hour: datetime
    customer_id: str
    resource_id: str
    product: str
    dimension: str
    quantity: FixedPoint
    amount: FixedPoint
    rated_rows: int


class LineUsage(BaseModel):
    invoice_id: str
    line_no: int
    meter: str
    dimension: str
    quantity: FixedPoint = Field(description="Sum of the rows: the usage the line (or its tier lines) bills")
    amount: FixedPoint = Field(description="What the stream rated the rows at, summed exactly, shown to 12 places")
    rows: list[LineUsageRow]


class DeliveryOut(BaseModel):
    invoice_id: str
    recipient: str
    status: str
    attempts: int
    last_error: str
    next_attempt_at: datetime

    @classmethod
    def of(cls, delivery: Delivery) -> DeliveryOut:
        return cls(
            invoice_id=delivery.invoice_id,
            recipient=delivery.recipient,
            status=delivery.status.value,
            attempts=delivery.attempts,
            last_error=delivery.last_error,
            next_attempt_at=as_utc(delivery.next_attempt_at),
        )
