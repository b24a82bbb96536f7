"""Invoices in ClickHouse: drafts written at close, then issued, paid or voided.

Every change appends a row (``invoices`` is a ReplacingMergeTree on ``updated_at``), so the
history of an invoice is never rewritten in place. Numbers are given at issue, one sequence per
issuer, under a lock: one process owns the ledger (the API process, which owns ClickHouse), so
the next number is the issuer's highest plus one and no number is skipped or used twice.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import polars as pl
import pyarrow as pa
from clickhouse_connect.driver.client import Client

from billing.invoices import (
    DocumentType,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    LineKind,
    UsageScope,
)
from billing.periods import Period
from meterline.exceptions import InvoiceStateError, UnknownInvoice
from schemas.clickhouse import INVOICE_LINES, INVOICES, as_utc
from schemas.records import MONEY, TIMESTAMP

LINE_SCHEMA: dict[str, pl.DataType] = {
    "invoice_id": pl.String(),
    "revision": pl.UInt32(),
    "line_no": pl.UInt32(),
    "kind": pl.String(),
    "description": pl.String(),
    "quantity": MONEY,
    "unit": pl.String(),
    "unit_price": MONEY,
    "amount": MONEY,
    "meter": pl.String(),
    "dimension": pl.String(),
    "adjusts_period": pl.String(),
    "scope.dimension": pl.List(pl.String()),
    "scope.start": pl.List(TIMESTAMP),
    "scope.end": pl.List(TIMESTAMP),
}
HEADER_SCHEMA: dict[str, pl.DataType] = {
    "invoice_id": pl.String(),
    "revision": pl.UInt32(),
    "document_type": pl.String(),
    "status": pl.String(),
    "period": pl.String(),
    "issuer_id": pl.String(),
    "buyer_id": pl.String(),
    "buyer_name": pl.String(),
    "number": pl.String(),
    "sequence": pl.UInt64(),
    "credits_number": pl.String(),
    "currency": pl.String(),
    "covered_customers": pl.List(pl.String()),
    "discount_percent": MONEY,
    "tax_name": pl.String(),
    "tax_rate_percent": MONEY,
    "tax_inclusive": pl.Boolean(),
    "subtotal": MONEY,
    "discount": MONEY,
    "net": MONEY,
    "tax_amount": MONEY,
    "total": MONEY,
    "closed_at": TIMESTAMP,
    "issued_at": TIMESTAMP,
    "updated_at": TIMESTAMP,
}


def credit_note_id(invoice_id: str) -> str:
    return f"{invoice_id}.credit"


@dataclass(frozen=True)
class InvoiceRecord:
    """An invoice or credit note as stored: its header, and its lines once loaded."""

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
    issued_at: datetime | None
    updated_at: datetime
    lines: tuple[InvoiceLine, ...] = field(default=(), compare=False)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> InvoiceRecord:
        values = {name: row[name] for name in HEADER_SCHEMA}
        values["document_type"] = DocumentType(row["document_type"])
        values["status"] = InvoiceStatus(row["status"])
        return cls(**values)

    @classmethod
    def draft(cls, invoice: Invoice, revision: int, now: datetime) -> InvoiceRecord:
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
            lines=invoice.lines,
        )


class Ledger:
    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self._invoices = f"{database}.{INVOICES}"
        self._lines = f"{database}.{INVOICE_LINES}"
        # one lock for every call: an embedded engine handle is not for concurrent use, and
        # numbering must read the highest number and write the next one with nothing between
        self._lock = threading.RLock()

    def _query(self, query: str, parameters: dict[str, Any]) -> Any:
        with self._lock:
            return self._client.query(query, parameters=parameters)

    def _command(self, query: str, parameters: dict[str, Any]) -> Any:
        with self._lock:
            return self._client.command(query, parameters=parameters)

    def _insert(self, table: str, rows: pa.Table) -> None:
        with self._lock:
            self._client.insert_arrow(table, rows)

    def adjustments_to(self, adjusted: Period, *, excluding: Period) -> dict[tuple[str, str], Decimal]:
        """Per (issuer, buyer) billed in ``adjusted``: the adjustments to that period on other
        periods' live invoices."""
        result = self._query(
            f"""SELECT i.issuer_id, i.buyer_id, sum(l.amount)
            FROM {self._lines} AS l
            INNER JOIN (
                SELECT invoice_id, revision, issuer_id, buyer_id FROM {self._invoices} FINAL
                WHERE status != 'void' AND document_type = 'invoice' AND period != {{excluding:String}}
            ) AS i ON l.invoice_id = i.invoice_id AND l.revision = i.revision
            WHERE l.kind = 'adjustment' AND l.adjusts_period = {{adjusted:String}}
            GROUP BY i.issuer_id, i.buyer_id""",
            parameters={"adjusted": adjusted.name, "excluding": excluding.name},
        )
        return {(issuer, buyer): amount for issuer, buyer, amount in result.result_rows}

    def own_adjustments(self, period: Period) -> dict[str, Decimal]:
        """Per invoice of ``period``: its adjustment lines' total (they correct earlier periods)."""
        result = self._query(
            f"""SELECT l.invoice_id, sum(l.amount)
            FROM {self._lines} AS l
            INNER JOIN (SELECT invoice_id, revision FROM {self._invoices} FINAL WHERE period = {{period:String}}) AS i
            ON l.invoice_id = i.invoice_id AND l.revision = i.revision
            WHERE l.kind = 'adjustment'
            GROUP BY l.invoice_id""",
            parameters={"period": period.name},
        )
        return dict(result.result_rows)

    def headers(self, *, period: str | None = None, buyer_id: str | None = None) -> list[InvoiceRecord]:
        conditions = ["1"]
        if period is not None:
            conditions.append("period = {period:String}")
        if buyer_id is not None:
            conditions.append("(buyer_id = {buyer:String} OR has(covered_customers, {buyer:String}))")
        result = self._query(
            f"SELECT * FROM {self._invoices} FINAL WHERE {' AND '.join(conditions)} ORDER BY period, invoice_id",
            parameters={"period": period, "buyer": buyer_id},
        )
        return [InvoiceRecord.from_row(row) for row in result.named_results()]

    def get(self, invoice_id: str) -> InvoiceRecord:
        result = self._query(
            f"SELECT * FROM {self._invoices} FINAL WHERE invoice_id = {{id:String}}", parameters={"id": invoice_id}
        )
        rows = list(result.named_results())
        if not rows:
            raise UnknownInvoice(f"no invoice {invoice_id!r}")
        record = InvoiceRecord.from_row(rows[0])
        return replace(record, lines=tuple(self._load_lines(record)))

    def _load_lines(self, record: InvoiceRecord) -> Iterator[InvoiceLine]:
        result = self._query(
            f"""SELECT kind, description, quantity, unit, unit_price, amount, meter, dimension, adjusts_period,
                scope.dimension, scope.start, scope.end
            FROM {self._lines} FINAL WHERE invoice_id = {{id:String}} AND revision = {{revision:UInt32}}
            ORDER BY line_no""",
            parameters={"id": record.invoice_id, "revision": record.revision},
        )
        for row in result.result_rows:
            kind, description, quantity, unit, unit_price, amount, meter, dimension, adjusts_period = row[:9]
            scopes = tuple(
                UsageScope(scope_dimension, as_utc(start), as_utc(end))
                for scope_dimension, start, end in zip(*row[9:], strict=True)
            )
            yield InvoiceLine(
                LineKind(kind),
                description,
                quantity,
                unit,
                unit_price,
                amount,
                meter,
                dimension,
                adjusts_period,
                scopes,
            )

    def save(self, records: list[InvoiceRecord], *, with_lines: bool = True) -> None:
        """Append header rows (and, for new revisions, their lines) in two inserts."""
        if not records:
            return
        headers = pl.DataFrame(
            [{name: getattr(record, name) for name in HEADER_SCHEMA} for record in records], schema=HEADER_SCHEMA
        )
        if with_lines:
            lines = pl.DataFrame(
                [
                    {
                        "invoice_id": record.invoice_id,
                        "revision": record.revision,
                        "line_no": number,
                        **{name: getattr(line, name) for name in list(LINE_SCHEMA)[3:-3]},
                        "scope.dimension": [scope.dimension for scope in line.scopes],
                        "scope.start": [scope.start for scope in line.scopes],
                        "scope.end": [scope.end for scope in line.scopes],
                    }
                    for record in records
                    for number, line in enumerate(record.lines, start=1)
                ],
                schema=LINE_SCHEMA,
            )
            self._insert(self._lines, lines.to_arrow())
        self._insert(self._invoices, headers.to_arrow())

    def change_status(
        self, invoice_id: str, target: InvoiceStatus, now: datetime, prefix_of: dict[str, str]
    ) -> tuple[InvoiceStatus, InvoiceRecord]:
        """Move an invoice along its lifecycle; issuing gives it the issuer's next number.

        Returns the status it had, read under the same lock as the change, so that a caller
        reacting to a transition (emailing the invoice) does so once even under concurrent calls.
        """
        with self._lock:
            record = self.get(invoice_id)
            if record.status is target:
                return record.status, record
            if not record.status.can_become(target):
                raise InvoiceStateError(f"invoice {invoice_id} is {record.status}; it cannot become {target}")
            if target is InvoiceStatus.ISSUED:
                _check_period_ended(record.period, now)
            changed = replace(record, status=target, updated_at=now)
            if target is InvoiceStatus.ISSUED:
                changed = self._numbered(changed, now, prefix_of)
            self.save([changed], with_lines=False)
            if target is InvoiceStatus.VOID and record.status is InvoiceStatus.ISSUED:
                self._credit(record, now, prefix_of)
            return record.status, changed

    def issue_period(self, period: str, now: datetime, prefix_of: dict[str, str]) -> list[InvoiceRecord]:
        """Issue every draft of a period at once: consecutive numbers per issuer, in invoice-id order."""
        _check_period_ended(period, now)
        with self._lock:
            drafts = [r for r in self.headers(period=period) if r.status is InvoiceStatus.DRAFT]
            issued = []
            for issuer_id in sorted({r.issuer_id for r in drafts}):
                highest = self._highest_sequence(issuer_id)
                for offset, record in enumerate(r for r in drafts if r.issuer_id == issuer_id):
                    issued.append(self._with_number(record, highest + offset + 1, now, prefix_of))
            self.save(issued, with_lines=False)
            return issued

    def _numbered(self, record: InvoiceRecord, now: datetime, prefix_of: dict[str, str]) -> InvoiceRecord:
        return self._with_number(record, self._highest_sequence(record.issuer_id) + 1, now, prefix_of)

    def _highest_sequence(self, issuer_id: str) -> int:
        highest = self._command(
            f"SELECT max(sequence) FROM {self._invoices} FINAL WHERE issuer_id = {{issuer:String}}",
            parameters={"issuer": issuer_id},
        )
        return int(str(highest))

    @staticmethod
    def _with_number(record: InvoiceRecord, sequence: int, now: datetime, prefix_of: dict[str, str]) -> InvoiceRecord:
        number = f"{prefix_of[record.issuer_id]}-{sequence:06d}"
        return replace(
            record, status=InvoiceStatus.ISSUED, sequence=sequence, number=number, issued_at=now, updated_at=now
        )

    def _credit(self, record: InvoiceRecord, now: datetime, prefix_of: dict[str, str]) -> None:
        """A void issued invoice keeps its number; a credit note, numbered in turn, cancels it."""
        negated = tuple(replace(line, quantity=-line.quantity, amount=-line.amount) for line in record.lines)
        credit = replace(
            record,
            invoice_id=credit_note_id(record.invoice_id),
            revision=1,
            document_type=DocumentType.CREDIT_NOTE,
            status=InvoiceStatus.ISSUED,
            credits_number=record.number,
            subtotal=-record.subtotal,
            discount=-record.discount,
            net=-record.net,
            tax_amount=-record.tax_amount,
            total=-record.total,
            closed_at=now,
            updated_at=now,
            lines=negated,
        )
        self.save([self._numbered(credit, now, prefix_of)])


def _check_period_ended(period: str, now: datetime) -> None:
    """A month is invoiced once it is over: before that its drafts are previews."""
    end = Period.parse(period).end
    if now < end:
        raise InvoiceStateError(
            f"period {period} has not ended: its drafts can be previewed, and issued from {end.isoformat()}"
        )
