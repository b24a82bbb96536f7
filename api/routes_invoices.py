"""Period close, invoices and their documents, and the drill-down from a line to raw events."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from fractions import Fraction
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from api.access.audit import note_change
from api.access.guard import Caller, InvoiceChanger, InvoiceReader, PeriodCloser
from api.catalog_admin import CatalogAdmin
from api.delivery import Deliveries
from api.documents.einvoice import cii_xml, pdf_for_buyer, ubl_xml
from api.documents.html import render_html
from api.documents.table import render_csv
from api.documents.view import InvoiceView
from api.errors import Problem
from api.invoice_models import CloseOut, DeliveryOut, InvoiceOut, LineUsage, LineUsageRow
from api.models import CustomerId, InvoiceId, PeriodName
from api.services import services_of
from api.spreadsheet import text_cell
from billing.catalog import Catalog
from billing.invoices import InvoiceStatus, LineKind, UsageScope
from billing.mailing import documents_to_email, recipient_of
from billing.money import shown_quantity
from billing.period_close import check_billable, close_period
from billing.periods import Period
from billing.records import InvoiceRecord
from meterline.exceptions import InvalidQuery, UnknownCustomer
from storage.billed_usage import PeriodUsage
from storage.clock import StoredThrough
from storage.connection import as_utc
from storage.ledger import Ledger
from storage.usage_queries import LineScope, UsageQueries

router = APIRouter(prefix="/v1", tags=["invoicing"])


def _ledger(request: Request) -> Ledger:
    ledger: Ledger = services_of(request).ledger
    return ledger


def _catalog(request: Request) -> Catalog:
    admin: CatalogAdmin = services_of(request).catalog_admin
    return admin.catalog


@router.post(
    "/periods/{period}/close",
    response_model=CloseOut,
    responses={
        409: {"description": "Usage of the period may be missing (gaps listed); force=true bills anyway"},
        422: {
            "model": Problem,
            "description": "A month after the current one, or one that ends before the catalog's first billable "
            "day (application/problem+json)",
        },
    },
)
def close(request: Request, _caller: PeriodCloser, period: PeriodName, force: bool = False) -> CloseOut:
    """Build (or rebuild) the period's draft invoices; issued ones are never touched.

    Refused while messages sent by agents or the intake, which may hold usage of the period,
    were never stored (see ``GET /v1/completeness``); ``force=true`` closes anyway and says so
    in each draft's notes. A month after the current one, or one that ends before the catalog's
    first billable day, is refused (422)."""
    usage: PeriodUsage = services_of(request).period_usage
    clock: StoredThrough = services_of(request).stored_through
    lookback: int = services_of(request).late_usage_months
    catalog, month, now = _catalog(request), Period.parse(period), clock.now()
    check_billable(catalog, month, now.date())
    gaps = services_of(request).completeness.gaps()
    credit = services_of(request).credit
    result = close_period(
        _ledger(request),
        usage,
        catalog,
        month,
        now,
        lookback,
        gaps,
        force,
        lambda drafts: credit.apply_to_invoices(drafts, now),
    )
    note_change(request, None, {"period": period, "force": force, **vars(result)})
    return CloseOut(**vars(result))


@router.post("/periods/{period}/issue", response_model=list[InvoiceOut])
def issue_period(request: Request, _caller: PeriodCloser, period: PeriodName) -> list[InvoiceOut]:
    """Issue every draft of the period at once, numbered consecutively per issuer."""
    ledger, catalog, now = _ledger(request), _catalog(request), datetime.now(UTC)
    issued = ledger.issue_period(Period.parse(period).name, now, catalog.invoice_prefixes())
    deliveries: Deliveries | None = services_of(request).deliveries
    if deliveries is not None:
        documents = {
            document: recipient_of(catalog, record.buyer_id)
            for record in issued
            for document in documents_to_email(record.invoice_id, InvoiceStatus.DRAFT, record.status)
        }
        deliveries.enqueue(documents, now)
    note_change(request, None, {"issued": {r.invoice_id: r.number for r in issued}})
    return [InvoiceOut.of(record) for record in issued]


@router.get("/invoices", response_model=list[InvoiceOut])
def list_invoices(
    request: Request,
    caller: InvoiceReader,
    period: str | None = None,
    buyer_id: str | None = None,
    status: InvoiceStatus | None = None,
) -> list[InvoiceOut]:
    """The invoices the caller sees: every one for the provider, a tenant's own otherwise."""
    if period is not None:
        Period.parse(period)
    records = _ledger(request).headers(caller.scope, period=period, buyer_id=buyer_id)
    return [InvoiceOut.of(r) for r in records if status is None or r.status is status]


@router.get("/customers/{customer_id}/invoices", response_model=list[InvoiceOut])
def customer_invoices(request: Request, caller: InvoiceReader, customer_id: CustomerId) -> list[InvoiceOut]:
    """The invoices a customer receives - never its partner's own invoice from the provider."""
    if not caller.scope.sees_customer(customer_id):
        raise UnknownCustomer(f"no customer {customer_id!r}")
    records = _ledger(request).headers(caller.scope, buyer_id=customer_id)
    return [InvoiceOut.of(r) for r in records if r.buyer_id == customer_id]


@router.get("/invoices/{invoice_id}", response_model=InvoiceOut)
def get_invoice(request: Request, caller: InvoiceReader, invoice_id: InvoiceId) -> InvoiceOut:
    return InvoiceOut.of(_ledger(request).get(caller.scope, invoice_id), with_lines=True)


@router.post("/invoices/{invoice_id}/issue", response_model=InvoiceOut)
def issue(request: Request, caller: InvoiceChanger, invoice_id: InvoiceId) -> InvoiceOut:
    """Give a draft the issuer's next number; issuing again returns the same invoice."""
    return _change(request, caller, invoice_id, InvoiceStatus.ISSUED)


@router.post("/invoices/{invoice_id}/pay", response_model=InvoiceOut)
def pay(request: Request, caller: InvoiceChanger, invoice_id: InvoiceId) -> InvoiceOut:
    return _change(request, caller, invoice_id, InvoiceStatus.PAID)


@router.post("/invoices/{invoice_id}/void", response_model=InvoiceOut)
def void(request: Request, caller: InvoiceChanger, invoice_id: InvoiceId) -> InvoiceOut:
    """Void a draft, or cancel an issued invoice: it keeps its number and a credit note is issued."""
    return _change(request, caller, invoice_id, InvoiceStatus.VOID)


def _change(request: Request, caller: Caller, invoice_id: str, target: InvoiceStatus) -> InvoiceOut:
    ledger, catalog, now = _ledger(request), _catalog(request), datetime.now(UTC)
    before, changed = ledger.change_status(caller.scope, invoice_id, target, now, catalog.invoice_prefixes())
    note_change(request, {"status": before.value}, {"status": changed.status.value, "number": changed.number})
    if changed.status is InvoiceStatus.VOID and before is not InvoiceStatus.VOID:
        services_of(request).credit.release_invoice(changed, now)  # the credit it took is given back
    deliveries: Deliveries | None = services_of(request).deliveries
    if deliveries is not None:
        documents = documents_to_email(invoice_id, before, changed.status)
        deliveries.enqueue({document: recipient_of(catalog, changed.buyer_id) for document in documents}, now)
    return InvoiceOut.of(changed)


def _deliveries(request: Request) -> Deliveries:
    deliveries: Deliveries | None = services_of(request).deliveries
    if deliveries is None:
        raise InvalidQuery("invoices are not emailed here: set METERLINE_SMTP_HOST")
    return deliveries


@router.get("/invoices/{invoice_id}/delivery", response_model=DeliveryOut)
def delivery(request: Request, caller: InvoiceReader, invoice_id: InvoiceId) -> DeliveryOut:
    """Where the invoice's email stands: pending, sent, retrying (with the last error) or no recipient."""
    record = _ledger(request).get(caller.scope, invoice_id)
    return DeliveryOut.of(_deliveries(request).of(record))


@router.post("/invoices/{invoice_id}/deliver", response_model=DeliveryOut)
def deliver_again(request: Request, caller: InvoiceChanger, invoice_id: InvoiceId) -> DeliveryOut:
    """Send again at the next check, without waiting for the retry delay."""
    record = _ledger(request).get(caller.scope, invoice_id)
    caller.scope.check_may_change_invoice(invoice_id, record.issuer_id, record.buyer_id)
    before, after = _deliveries(request).retry_now(record)
    note_change(request, DeliveryOut.of(before).model_dump(mode="json"), DeliveryOut.of(after).model_dump(mode="json"))
    return DeliveryOut.of(after)


def _view(request: Request, caller: Caller, invoice_id: str) -> InvoiceView:
    record = _ledger(request).get(caller.scope, invoice_id)
    return InvoiceView.of(record, _catalog(request), services_of(request).payments.pay_link(record))


@router.get("/invoices/{invoice_id}/html", response_class=HTMLResponse)
def invoice_html(request: Request, caller: InvoiceReader, invoice_id: InvoiceId) -> HTMLResponse:
    return HTMLResponse(render_html(_view(request, caller, invoice_id)))


@router.get("/invoices/{invoice_id}/pdf", response_class=Response)
def invoice_pdf(request: Request, caller: InvoiceReader, invoice_id: InvoiceId) -> Response:
    """Factur-X (PDF/A-3 with the CII XML inside) once issued; a plain PDF for a draft or tax-inclusive prices."""
    view = _view(request, caller, invoice_id)
    return _attachment(pdf_for_buyer(view), "application/pdf", view, "pdf")


@router.get("/invoices/{invoice_id}/csv", response_class=Response)
def invoice_csv(request: Request, caller: InvoiceReader, invoice_id: InvoiceId) -> Response:
    view = _view(request, caller, invoice_id)
    return _attachment(render_csv(view).encode(), "text/csv", view, "csv")


@router.get("/invoices/{invoice_id}/cii", response_class=Response)
def invoice_cii(request: Request, caller: InvoiceReader, invoice_id: InvoiceId) -> Response:
    view = _view(request, caller, invoice_id)
    return _attachment(cii_xml(view), "application/xml", view, "cii.xml")


@router.get("/invoices/{invoice_id}/ubl", response_class=Response)
def invoice_ubl(request: Request, caller: InvoiceReader, invoice_id: InvoiceId) -> Response:
    view = _view(request, caller, invoice_id)
    return _attachment(ubl_xml(view), "application/xml", view, "ubl.xml")


def _attachment(body: bytes, media_type: str, view: InvoiceView, extension: str) -> Response:
    name = view.record.number or view.record.invoice_id
    return Response(
        body, media_type=media_type, headers={"Content-Disposition": f'inline; filename="{name}.{extension}"'}
    )


def line_scope(record: InvoiceRecord, line_no: int) -> LineScope:
    """What usage an invoice's usage line bills; another kind of line, or no such line, is refused."""
    if not 1 <= line_no <= len(record.lines):
        raise InvalidQuery(f"invoice {record.invoice_id} has lines 1 to {len(record.lines)}")
    line = record.lines[line_no - 1]
    if line.kind is not LineKind.USAGE:
        raise InvalidQuery(f"line {line_no} is a {line.kind.value} line; only usage lines have usage behind them")
    period = Period.parse(record.period)
    # lines stored before they named their scopes billed one dimension over the whole period
    scopes = line.scopes or (UsageScope(line.dimension, period.start, period.end),)
    return LineScope(record.covered_customers, line.meter, scopes, period.start, period.end, record.closed_at)


@router.get("/invoices/{invoice_id}/lines/{line_no}/usage", response_model=LineUsage)
def line_usage(request: Request, caller: InvoiceReader, invoice_id: InvoiceId, line_no: int) -> LineUsage:
    scope = line_scope(_ledger(request).get(caller.scope, invoice_id), line_no)
    queries: UsageQueries = services_of(request).queries
    hours = queries.line_usage(scope)
    rows = [
        LineUsageRow(
            **{
                **hour,
                "hour": as_utc(hour["period_start"]),
                "quantity": shown_quantity(hour["quantity"]).normalize(),
                "amount": shown_quantity(hour["amount"]),
            }
        )
        for hour in hours
    ]
    return LineUsage(
        invoice_id=invoice_id,
        line_no=line_no,
        meter=scope.meter,
        dimension=", ".join(sorted({s.dimension for s in scope.scopes})),
        # shown like the line's quantity, which it adds up to
        quantity=shown_quantity(queries.line_quantity(scope)).normalize(),
        amount=shown_quantity(sum((hour["amount"] for hour in hours), Fraction(0))),
        rows=rows,
    )


@router.get("/invoices/{invoice_id}/lines/{line_no}/usage.csv", response_class=Response)
def line_usage_csv(request: Request, caller: InvoiceReader, invoice_id: InvoiceId, line_no: int) -> Response:
    """The same hourly usage as CSV, for checking an invoice line in a spreadsheet."""
    usage = line_usage(request, caller, invoice_id, line_no)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["hour", "customer_id", "resource_id", "product", "meter", "dimension", "quantity", "amount"])
    for row in usage.rows:
        writer.writerow(
            [f"{row.hour:%Y-%m-%dT%H:%M:%SZ}", *map(text_cell, (row.customer_id, row.resource_id, row.product))]
            + [usage.meter, text_cell(row.dimension), f"{row.quantity:f}", f"{row.amount:f}"]
        )
    name = f"{invoice_id}-line-{line_no}-usage.csv"
    return Response(
        out.getvalue(), media_type="text/csv", headers={"Content-Disposition": f'inline; filename="{name}"'}
    )


@router.get("/invoices/{invoice_id}/lines/{line_no}/events", response_class=Response)
def line_events(
    request: Request,
    caller: InvoiceReader,
    invoice_id: InvoiceId,
    line_no: int,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    offset: Annotated[int, Query(ge=0, le=2**32 - 1, description="events to skip")] = 0,
) -> Response:
    """The raw CloudEvents behind a usage line, as received, one JSON document per line (NDJSON)."""
    scope = line_scope(_ledger(request).get(caller.scope, invoice_id), line_no)
    queries: UsageQueries = services_of(request).queries
    events = queries.line_events(scope, limit, offset)
    return Response("".join(f"{event}\n" for event in events), media_type="application/x-ndjson")
