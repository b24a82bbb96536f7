"""What every rendering of an invoice needs: the stored invoice, both parties, money for display."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from billing.adapters.clickhouse_ledger import InvoiceRecord
from billing.catalog import Catalog, Issuer, Party
from billing.invoices import DocumentType
from billing.money import round_money
from billing.periods import Period

PAYMENT_DAYS = 30
QUANTITY_PLACES = Decimal("0.0001")


@dataclass(frozen=True)
class InvoiceView:
    record: InvoiceRecord
    issuer: Issuer
    buyer: Party

    @classmethod
    def of(cls, record: InvoiceRecord, catalog: Catalog) -> InvoiceView:
        return cls(record=record, issuer=catalog.issuer(record.issuer_id), buyer=catalog.party(record.buyer_id))

    @property
    def title(self) -> str:
        kind = "Credit note" if self.record.document_type is DocumentType.CREDIT_NOTE else "Invoice"
        return (
            f"{kind} {self.record.number}" if self.record.number else f"Draft {kind.lower()} {self.record.invoice_id}"
        )

    @property
    def issue_date(self) -> date:
        return (self.record.issued_at or self.record.closed_at).date()

    @property
    def due_date(self) -> date:
        return self.issue_date + timedelta(days=PAYMENT_DAYS)

    @property
    def period(self) -> Period:
        return Period.parse(self.record.period)

    def money(self, amount: Decimal) -> str:
        """An amount in the invoice currency's minor unit: 1234.5 EUR -> '1234.50'."""
        return f"{round_money(amount, self.record.currency):f}"

    @staticmethod
    def quantity(value: Decimal) -> str:
        """A quantity for people: 4 places, as rated hours of 5-minute samples carry 12."""
        return f"{value.quantize(QUANTITY_PLACES).normalize():f}"

    @staticmethod
    def number(value: Decimal) -> str:
        """A quantity or unit price without trailing zeros: 12.500000000000 -> '12.5'."""
        return f"{value.normalize():f}"
