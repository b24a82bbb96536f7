"""Invoices in ClickHouse: drafts written at close, then issued, paid or voided.

The rules of an invoice's lifecycle (numbering, credit notes, when a period may be issued) are
``billing.records``; this module stores the records and serialises the changes.

Every change appends a row (``invoices`` is a ReplacingMergeTree on ``updated_at``), so the
history of an invoice is never rewritten in place. Numbers are given at issue, one sequence per
issuer, under a lock: one process owns the ledger (the API process, which owns ClickHouse), so
the next number is the issuer's highest plus one and no number is skipped or used twice.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, get_args, get_type_hints

import polars as pl
import pyarrow as pa
from clickhouse_connect.driver.client import Client

from billing.invoices import DocumentType, InvoiceLine, InvoiceStatus, LineKind, UsageScope
from billing.money import decimal_places, with_places
from billing.periods import Period
from billing.records import InvoiceRecord, check_period_ended
from billing.scope import EVERYTHING, Scope
from meterline.exceptions import UnknownInvoice
from schemas.records import MONEY, TIMESTAMP
from storage.connection import as_utc
from storage.locks import held
from storage.tables import INVOICE_LINES, INVOICES, NUMBERING_LOCK

ARROW_MONEY = pa.decimal128(38, 12)
STALE_NUMBERING = timedelta(minutes=2)
"""Far longer than numbering a period's invoices takes: a lock this old was left by a dead process."""
WAIT = timedelta(minutes=5)
ARROW_TIME = pa.timestamp("ms", tz="UTC")
LINE_SCHEMA = pa.schema(
    [
        ("invoice_id", pa.string()),
        ("revision", pa.uint32()),
        ("line_no", pa.uint32()),
        ("kind", pa.string()),
        ("description", pa.string()),
        ("quantity", ARROW_MONEY),
        ("unit", pa.string()),
        ("unit_price", ARROW_MONEY),
        ("unit_price_places", pa.uint8()),
        ("amount", ARROW_MONEY),
        ("meter", pa.string()),
        ("dimension", pa.string()),
        ("adjusts_period", pa.string()),
        ("scope.dimension", pa.list_(pa.string())),
        ("scope.start", pa.list_(ARROW_TIME)),
        ("scope.end", pa.list_(ARROW_TIME)),
    ]
)
"""Built as Arrow directly: a close writes some 300,000 lines, with lists in each."""
INTEGER_COLUMNS: dict[str, pl.DataType] = {"revision": pl.UInt32(), "sequence": pl.UInt64(), "line_count": pl.UInt32()}
COLUMN_TYPES: dict[object, pl.DataType] = {
    str: pl.String(),
    DocumentType: pl.String(),
    InvoiceStatus: pl.String(),
    Decimal: MONEY,
    bool: pl.Boolean(),
    datetime: TIMESTAMP,
    list[str]: pl.List(pl.String()),
}


def _header_schema() -> dict[str, pl.DataType]:
    """The stored header's columns: ``InvoiceRecord``'s fields, declared once, there."""
    hints = get_type_hints(InvoiceRecord)
    schema = {}
    for column in fields(InvoiceRecord):
        if column.name == "lines":
            continue
        hint = hints[column.name]
        optional = [arg for arg in get_args(hint) if arg is not type(None)] if type(None) in get_args(hint) else []
        schema[column.name] = INTEGER_COLUMNS.get(column.name) or COLUMN_TYPES[optional[0] if optional else hint]
    return schema


HEADER_SCHEMA = _header_schema()


def _line_columns(records: list[InvoiceRecord]) -> dict[str, list[Any]]:
    """The records' lines as columns (a close writes some 300,000: rows of dicts cost 5x more)."""
    numbered = [(record, number, line) for record in records for number, line in enumerate(record.lines, start=1)]
    columns: dict[str, list[Any]] = {
        "invoice_id": [record.invoice_id for record, _, _ in numbered],
        "revision": [record.revision for record, _, _ in numbered],
        "line_no": [number for _, number, _ in numbered],
    }
    for name in LINE_SCHEMA.names[3:-3]:
        if name != "unit_price_places":
            columns[name] = [getattr(line, name) for _, _, line in numbered]
    columns["unit_price_places"] = [decimal_places(line.unit_price) for _, _, line in numbered]
    columns["kind"] = [line.kind.value for _, _, line in numbered]
    columns["scope.dimension"] = [[scope.dimension for scope in line.scopes] for _, _, line in numbered]
    columns["scope.start"] = [[scope.start for scope in line.scopes] for _, _, line in numbered]
    columns["scope.end"] = [[scope.end for scope in line.scopes] for _, _, line in numbered]
    return columns


def _from_row(row: dict[str, Any]) -> InvoiceRecord:
    values = {name: row[name] for name in HEADER_SCHEMA}
    values["document_type"] = DocumentType(row["document_type"])
    values["status"] = InvoiceStatus(row["status"])
    return InvoiceRecord(**values)


class Ledger:
    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self._invoices = f"{database}.{INVOICES}"
        self._lines = f"{database}.{INVOICE_LINES}"
        self._database = database
        # one lock for every call: an embedded engine handle is not for concurrent use, and
        # numbering must read the highest number and write the next one with nothing between
        self._lock = threading.RLock()

    @contextmanager
    def _numbering(self) -> Iterator[None]:
        """Numbering and status changes, one at a time across every process sharing the store:
        no number is given twice, and a transition is seen (and emailed) once."""
        with self._lock, held(self._client, self._database, NUMBERING_LOCK, stale_after=STALE_NUMBERING, wait=WAIT):
            yield

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

    def latest_issued_period(self) -> Period | None:
        """The latest month with an invoice that was ever issued (numbered), if any."""
        latest = str(self._command(f"SELECT max(period) FROM {self._invoices} FINAL WHERE number != ''", {}))
        return Period.parse(latest) if latest else None

    def headers(self, scope: Scope, *, period: str | None = None, buyer_id: str | None = None) -> list[InvoiceRecord]:
        """Invoice headers the scope sees (those of its buyers, drafts only its issuers'), of a
        period, of or covering a buyer."""
        conditions = ["1"]
        if period is not None:
            conditions.append("period = {period:String}")
        if buyer_id is not None:
            conditions.append("(buyer_id = {buyer:String} OR has(covered_customers, {buyer:String}))")
        if scope.parties is not None:
            conditions.append("buyer_id IN {parties:Array(String)}")
            conditions.append("(status != 'draft' OR issuer_id IN {sellers:Array(String)})")
        result = self._query(
            f"SELECT * FROM {self._invoices} FINAL WHERE {' AND '.join(conditions)} ORDER BY period, invoice_id",
            parameters={
                "period": period,
                "buyer": buyer_id,
                "parties": sorted(scope.parties or ()),
                "sellers": sorted(scope.sellers),
            },
        )
        return [_from_row(row) for row in result.named_results()]

    def get(self, scope: Scope, invoice_id: str) -> InvoiceRecord:
        """One invoice with its lines; one the scope does not see does not exist for it."""
        result = self._query(
            f"SELECT * FROM {self._invoices} FINAL WHERE invoice_id = {{id:String}}", parameters={"id": invoice_id}
        )
        rows = list(result.named_results())
        if not rows or not scope.sees_invoice(rows[0]["issuer_id"], rows[0]["buyer_id"], rows[0]["status"] == "draft"):
            raise UnknownInvoice(f"no invoice {invoice_id!r}")
        record = _from_row(rows[0])
        return replace(record, lines=tuple(self._load_lines(record)))

    def _load_lines(self, record: InvoiceRecord) -> Iterator[InvoiceLine]:
        result = self._query(
            f"""SELECT kind, description, quantity, unit, unit_price, unit_price_places, amount, meter, dimension,
                adjusts_period,
                scope.dimension, scope.start, scope.end
            FROM {self._lines} FINAL WHERE invoice_id = {{id:String}} AND revision = {{revision:UInt32}}
                AND ({{count:UInt32}} = 0 OR line_no <= {{count:UInt32}})
            ORDER BY line_no""",
            parameters={"id": record.invoice_id, "revision": record.revision, "count": record.line_count},
        )
        for row in result.result_rows:
            kind, description, quantity, unit, unit_price, places, amount, meter, dimension, adjusts_period = row[:10]
            scopes = tuple(
                UsageScope(scope_dimension, as_utc(start), as_utc(end))
                for scope_dimension, start, end in zip(*row[10:], strict=True)
            )
            yield InvoiceLine(
                LineKind(kind),
                description,
                quantity,
                unit,
                with_places(unit_price, places),
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
            self._insert(self._lines, pa.table(_line_columns(records), schema=LINE_SCHEMA))
        self._insert(self._invoices, headers.to_arrow())

    def change_status(
        self,
        scope: Scope,
        invoice_id: str,
        target: InvoiceStatus,
        now: datetime,
        prefix_of: dict[str, str],
        payment_reference: str | None = None,
    ) -> tuple[InvoiceStatus, InvoiceRecord]:
        """Move an invoice along its lifecycle; issuing gives it the issuer's next number, and
        voiding an issued invoice issues its credit note.

        Returns the status it had, read under the same lock as the change, so that a caller
        reacting to a transition (emailing the invoice) does so once even under concurrent calls.
        """
        with self._numbering():
            record = self.get(scope, invoice_id)
            scope.check_may_change_invoice(invoice_id, record.issuer_id, record.buyer_id)
            if record.status is target:
                return record.status, record
            changed = record.becoming(target, now)
            if payment_reference is not None:
                changed = replace(changed, payment_reference=payment_reference)
            if target is InvoiceStatus.ISSUED:
                changed = self._numbered(changed, now, prefix_of)
            self.save([changed], with_lines=False)
            if target is InvoiceStatus.VOID and record.status.owed:
                self.save([self._numbered(record.credit_note(now), now, prefix_of)])
            return record.status, changed

    def issue_period(self, period: str, now: datetime, prefix_of: dict[str, str]) -> list[InvoiceRecord]:
        """Issue every draft of a period at once: consecutive numbers per issuer, in invoice-id order."""
        check_period_ended(period, now)
        with self._numbering():
            drafts = [r for r in self.headers(EVERYTHING, period=period) if r.status is InvoiceStatus.DRAFT]
            issued = []
            for issuer_id in sorted({r.issuer_id for r in drafts}):
                highest = self._highest_sequence(issuer_id)
                for offset, record in enumerate(r for r in drafts if r.issuer_id == issuer_id):
                    issued.append(record.numbered(prefix_of[issuer_id], highest + offset + 1, now))
            self.save(issued, with_lines=False)
            return issued

    def _numbered(self, record: InvoiceRecord, now: datetime, prefix_of: dict[str, str]) -> InvoiceRecord:
        """Issued with its issuer's next number; the caller holds the lock until it is saved."""
        return record.numbered(prefix_of[record.issuer_id], self._highest_sequence(record.issuer_id) + 1, now)

    def _highest_sequence(self, issuer_id: str) -> int:
        highest = self._command(
            f"SELECT max(sequence) FROM {self._invoices} FINAL WHERE issuer_id = {{issuer:String}}",
            parameters={"issuer": issuer_id},
        )
        return int(str(highest))
