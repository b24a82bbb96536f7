"""The client portal: a customer's (or a partner's, for each of its customers) consumption,
usage reports, invoices down to the hourly usage and raw events of each line, and credit.

Each page reads through the API's own route functions, with the visitor's caller narrowed to
the customer the page is about: what a page shows is what the API answers that caller, no more.
"""

from __future__ import annotations

import hmac
import json
import secrets
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import StringConstraints, TypeAdapter, ValidationError

from api import routes_alerts, routes_credit, routes_dashboards, routes_invoices, routes_payments, routes_usage
from api.access import sessions, tokens
from api.access.audit import note_change
from api.access.guard import Authenticator, admit, client_address
from api.access.principals import Permission, Principal
from api.documents.view import InvoiceView
from api.models import CustomerId, InvoiceId
from api.portal import consumption
from api.portal.guard import CSRF_FIELD, SignedIn, SigningIn, Visitor, posted_form
from api.portal.pages import PREFIX, STYLESHEET, Brand, render, security_headers
from api.services import services_of
from billing.catalog import Customer
from billing.invoices import InvoiceLine, LineKind
from billing.money import round_money, shown_quantity
from billing.periods import LATEST
from billing.scope import EVERYTHING
from meterline.exceptions import InvalidQuery, InvalidRange, Unauthenticated, UnknownCustomer, UnknownInvoice
from storage.usage_queries import Granularity, GroupBy

router = APIRouter(prefix=PREFIX, include_in_schema=False)
UsagePages = Annotated[Visitor, Depends(SignedIn(Permission.READ_USAGE))]
InvoicePages = Annotated[Visitor, Depends(SignedIn(Permission.READ_INVOICES))]
CreditPages = Annotated[Visitor, Depends(SignedIn(Permission.READ_CREDIT))]
PaymentPages = Annotated[Visitor, Depends(SignedIn(Permission.PAY))]
TOP_UP_KEY = TypeAdapter(Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{24}$")])
SHOWN_ROWS = 1000
"""Rows a page shows at most; the CSV beside it has them all."""
SHOWN_EVENTS = 20


@router.get("/static/portal.css", dependencies=[Depends(SigningIn())])
def stylesheet() -> Response:
    return Response(STYLESHEET.read_bytes(), media_type="text/css", headers={"Cache-Control": "max-age=3600"})


@router.get("/sign-in", response_class=HTMLResponse, dependencies=[Depends(SigningIn())])
def sign_in_page(request: Request, token: Annotated[str | None, Query(max_length=2048)] = None) -> Response:
    """The sign-in form; with a read token link's ``token``, a form to continue as its party."""
    return _sign_in_form(request, token=token)


@router.post("/sign-in", response_class=HTMLResponse, dependencies=[Depends(SigningIn())])
async def sign_in(request: Request) -> Response:
    """A customer's or partner's API key or read token, posted from the sign-in page, becomes a
    session; anything else is refused on the same page (and slows its sender like a bad key)."""
    authenticator: Authenticator = services_of(request).authenticator
    nonce = request.cookies.get(sessions.SIGN_IN_COOKIE, "")
    fields = await posted_form(request, sessions.sign_in_proof(nonce, authenticator.session_key) if nonce else "")
    now = datetime.now(UTC)
    presented = fields.get("credential", "").strip()
    authenticator.refuse_if_failing(client_address(request))
    try:
        principal = _portal_principal(request, presented, now)
    except (Unauthenticated, UnknownCustomer) as refused:
        authenticator.throttle_failure(client_address(request))
        return _sign_in_form(request, error=str(refused), status=401)
    token = tokens.verify(presented, authenticator.token_secret, now) if presented.startswith(tokens.PREFIX) else None
    session = sessions.new_session(principal.key_id if token is None else None, token, now)
    admit(request, principal)  # the audit log names who signed in, and the key's rate applies
    note_change(request, None, {"portal_session_until": session.expires_at.isoformat()})
    answer = RedirectResponse(f"{PREFIX}/", status_code=303, headers=security_headers())
    signed = sessions.sign(session, authenticator.session_key)
    _set_cookie(request, answer, sessions.SESSION_COOKIE, signed, session)
    answer.delete_cookie(sessions.SIGN_IN_COOKIE, path=PREFIX)
    return answer


def _portal_principal(request: Request, presented: str, now: datetime) -> Principal:
    """Who a credential is, if the portal is for it: a customer or partner still in the catalog."""
    principal = services_of(request).authenticator.principal(presented, now)
    if not principal.role.names_a_party or not principal.party_id:
        raise Unauthenticated("the portal is for customers and partners: sign in with one of their keys or links")
    services_of(request).catalog_admin.catalog.party(principal.party_id)
    return principal


@router.post("/sign-out")
def sign_out(request: Request, visitor: UsagePages) -> Response:
    """Ends the session: stored as signed out, so that a copy of its cookie is refused too."""
    session = visitor.session
    services_of(request).authenticator.keys.end_session(session.session_id, datetime.now(UTC), session.expires_at)
    answer = RedirectResponse(f"{PREFIX}/sign-in", status_code=303, headers=security_headers())
    answer.delete_cookie(sessions.SESSION_COOKIE, path=PREFIX)
    return answer


@router.get("/", response_class=HTMLResponse)
def home(request: Request, visitor: UsagePages) -> Response:
    """A customer's consumption; for a partner, its customers' month so far."""
    if not visitor.is_partner:
        return RedirectResponse(f"{PREFIX}/customers/{visitor.party_id}", status_code=303)
    report = routes_dashboards.month_to_date(request, visitor.caller, None)
    names = {c.id: c.name for c in visitor.catalog.customers if visitor.caller.scope.sees_customer(c.id)}
    return _page(request, visitor, "customers.html", month=report, names=names)


@router.get("/customers/{customer_id}", response_class=HTMLResponse)
def customer_consumption(request: Request, visitor: UsagePages, customer_id: CustomerId) -> Response:
    now = datetime.now(UTC)
    figures = consumption.month_so_far(request, visitor.of_customer(customer_id), customer_id, visitor.catalog, now)
    return _page(request, visitor, "consumption.html", customer=visitor.catalog.party(customer_id), figures=figures)


@router.get("/customers/{customer_id}/usage", response_class=HTMLResponse)
def usage_report(
    request: Request,
    visitor: UsagePages,
    customer_id: CustomerId,
    first_day: Annotated[date | None, Query(alias="from")] = None,
    last_day: Annotated[date | None, Query(alias="to")] = None,
    granularity: Granularity = Granularity.DAY,
    group_by: GroupBy = GroupBy.METER,
) -> Response:
    """Usage between two days, both included (UTC), grouped and bucketed as asked."""
    caller = visitor.of_customer(customer_id)
    start, end = _days(first_day, last_day)
    window = routes_usage.window(customer_id, start, end)
    page = services_of(request).queries.report_page(caller.scope, window, granularity, group_by, SHOWN_ROWS)
    return _page(
        request,
        visitor,
        "usage.html",
        customer=visitor.catalog.party(customer_id),
        rows=consumption.first_rows(page.rows, SHOWN_ROWS),
        more_rows=page.more,
        totals={currency: round_money(amount, currency) for currency, amount in sorted(page.totals.items())},
        first_day=start.date(),
        last_day=(end - timedelta(days=1)).date(),
        granularity=granularity.value,
        group_by=group_by.value,
        product_name=partial(consumption.product_name, visitor.catalog),
    )


@router.get("/customers/{customer_id}/usage.csv")
def usage_csv(
    request: Request,
    visitor: UsagePages,
    customer_id: CustomerId,
    first_day: Annotated[date | None, Query(alias="from")] = None,
    last_day: Annotated[date | None, Query(alias="to")] = None,
) -> Response:
    """The hourly CSV export of the API, for the same days."""
    start, end = _days(first_day, last_day)
    return _download(
        routes_usage.get_usage_csv(request, visitor.of_customer(customer_id), customer_id, start, end, None)
    )


@router.get("/invoices", response_class=HTMLResponse)
def invoices(request: Request, visitor: InvoicePages) -> Response:
    listed = routes_invoices.list_invoices(request, visitor.caller)
    listed.sort(key=lambda invoice: (invoice.period, invoice.closed_at), reverse=True)
    return _page(request, visitor, "invoices.html", invoices=listed)


@router.get("/invoices/{invoice_id}", response_class=HTMLResponse)
def invoice(request: Request, visitor: InvoicePages, invoice_id: InvoiceId) -> Response:
    """The invoice, its payments, and a button to pay it by card while it is owed."""
    view = _invoice_view(request, visitor, invoice_id)
    payments = services_of(request).payments
    payable = view.asks_payment and view.record.amount_due > 0 and payments.takes_cards(view.issuer)
    return _page(
        request,
        visitor,
        "invoice.html",
        view=view,
        usage_kind=LineKind.USAGE,
        card_payment=payable and visitor.caller.principal.may(Permission.PAY),
        form_targets=payments.page_origins(view.issuer) if payable else (),
        payments=[routes_payments.PaymentOut.of(p) for p in payments.store.of_invoice(invoice_id)],
    )


@router.post("/invoices/{invoice_id}/pay")
def pay_invoice(request: Request, visitor: PaymentPages, invoice_id: InvoiceId) -> Response:
    """To the gateway's page for what the invoice asks."""
    made = routes_payments.invoice_payment_page(request, visitor.caller, invoice_id)
    return RedirectResponse(made.page_url, status_code=303, headers=security_headers())


@router.get("/pay/{invoice_id}/{mac}", dependencies=[Depends(SigningIn())])
def pay_link(request: Request, invoice_id: InvoiceId, mac: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]) -> Response:
    """The payment link an invoice prints: to the gateway's page for what it asks, no sign-in
    needed. A link is its invoice's alone; any other is unknown (404)."""
    payments = services_of(request).payments
    if not hmac.compare_digest(mac, payments.link_mac(invoice_id)):
        raise UnknownInvoice(f"no invoice {invoice_id!r}")
    record = services_of(request).ledger.get(EVERYTHING, invoice_id)
    back = routes_payments.return_url(request, f"{PREFIX}/pay/{invoice_id}/{mac}")
    made = payments.page_for_invoice(record, back, datetime.now(UTC))
    return RedirectResponse(made.page_url, status_code=303, headers=security_headers())


@router.get("/invoices/{invoice_id}/pdf")
def invoice_pdf(request: Request, visitor: InvoicePages, invoice_id: InvoiceId) -> Response:
    return _download(routes_invoices.invoice_pdf(request, visitor.caller, invoice_id))


@router.get("/invoices/{invoice_id}/lines/{line_no}", response_class=HTMLResponse)
def invoice_line(request: Request, visitor: InvoicePages, invoice_id: InvoiceId, line_no: int) -> Response:
    """A line's hourly usage as billed, and the raw events behind it: what checks the line."""
    view = _invoice_view(request, visitor, invoice_id)
    scope = routes_invoices.line_scope(view.record, line_no)
    queries = services_of(request).queries
    hours = queries.line_usage(scope, SHOWN_ROWS)
    line = view.record.lines[line_no - 1]
    # a line the plan alone priced bills its usage's total, as the close counted it; the usage of
    # a plan split into lines (an allowance, tiers) is counted again to show the whole
    quantity = shown_quantity(queries.line_quantity(scope)) if _split(view, line) else line.quantity
    events = queries.line_events(scope, SHOWN_EVENTS, 0)
    return _page(
        request,
        visitor,
        "line.html",
        view=view,
        line_no=line_no,
        line=line,
        quantity=quantity,
        rows=hours,
        more_rows=len(hours) == SHOWN_ROWS,
        events=[_indented(text) for text in events],
    )


@router.get("/invoices/{invoice_id}/lines/{line_no}/usage.csv")
def invoice_line_csv(request: Request, visitor: InvoicePages, invoice_id: InvoiceId, line_no: int) -> Response:
    return _download(routes_invoices.line_usage_csv(request, visitor.caller, invoice_id, line_no))


@router.post("/credit/{holder_id}/top-up")
def top_up(request: Request, visitor: PaymentPages, holder_id: CustomerId) -> Response:
    """To the gateway's page buying credit; the form's key makes a second click the same payment."""
    try:
        asked = routes_payments.TopUpByCardIn(amount=visitor.form.get("amount", "").strip())
        key = TOP_UP_KEY.validate_python(visitor.form.get("key", ""))
    except ValidationError as error:
        raise InvalidQuery("enter an amount such as 50 or 50.00") from error
    made = routes_payments.top_up_by_card(request, visitor.caller, holder_id, asked, key)
    return RedirectResponse(made.page_url, status_code=303, headers=security_headers())


@router.get("/credit/{holder_id}", response_class=HTMLResponse)
def credit(request: Request, visitor: CreditPages, holder_id: CustomerId) -> Response:
    """A holder's balance, burn rate and run-out, its burn-down this month, grants and alerts,
    and a form to buy credit by card."""
    balance = routes_credit.balance(request, visitor.caller, holder_id, None)
    grants = routes_credit.list_grants(request, visitor.caller, holder_id)
    alerts = routes_alerts.customer_alerts(request, visitor.caller, holder_id)
    burn_down = consumption.burn_down(request, visitor, holder_id)
    card_pages = _card_pages(request, visitor, holder_id)
    return _page(
        request,
        visitor,
        "credit.html",
        holder=visitor.catalog.party(holder_id),
        balance=balance,
        grants=grants,
        alerts=alerts,
        burn_down=burn_down,
        card_top_up=bool(card_pages),
        form_targets=card_pages,
        currency=visitor.catalog.currency_of(holder_id),
        top_up_key=secrets.token_hex(12),
    )


def _card_pages(request: Request, visitor: Visitor, holder_id: str) -> tuple[str, ...]:
    """Where the holder's seller's payment pages are, when the visitor may buy it credit by card."""
    holder = visitor.catalog.party(holder_id)
    seller = visitor.catalog.seller_of(holder) if isinstance(holder, Customer) else visitor.catalog.provider
    if not visitor.caller.principal.may(Permission.PAY):
        return ()
    return services_of(request).payments.page_origins(seller)


def _split(view: InvoiceView, line: InvoiceLine) -> bool:
    """Whether another line of the invoice bills the same usage (its plan's other part)."""
    return any(
        other is not line and (other.meter, other.scopes) == (line.meter, line.scopes) for other in view.record.lines
    )


def _indented(event: str) -> str:
    """An event as received, indented for reading; as it is when it is not JSON (or not kept)."""
    try:
        return json.dumps(json.loads(event), indent=2, ensure_ascii=False)
    except ValueError:
        return event or "(not kept)"


def _download(answer: Response) -> Response:
    """A file as the pages are sent: never cached, never sniffed as another type."""
    answer.headers.update(security_headers())
    return answer


def _page(request: Request, visitor: Visitor, template: str, **context: Any) -> HTMLResponse:
    brand = Brand.of(visitor.catalog, visitor.caller.principal)
    principal = visitor.caller.principal
    return render(
        request,
        template,
        brand,
        signed_in=True,
        csrf=visitor.session.csrf,
        csrf_field=CSRF_FIELD,
        party=visitor.catalog.party(principal.party_id or ""),
        is_partner=visitor.is_partner,
        reads_invoices=principal.may(Permission.READ_INVOICES),
        reads_credit=principal.may(Permission.READ_CREDIT),
        **context,
    )


def _invoice_view(request: Request, visitor: Visitor, invoice_id: str) -> InvoiceView:
    record = services_of(request).ledger.get(visitor.caller.scope, invoice_id)
    return InvoiceView.of(record, visitor.catalog)  # the page has a button where documents print a link


def _days(first_day: date | None, last_day: date | None) -> tuple[datetime, datetime]:
    """``[first_day 00:00, last_day + 1 00:00)`` UTC; by default this month so far (to today)."""
    today = datetime.now(UTC).date()
    first = first_day or today.replace(day=1)
    last = last_day or today
    if last < first:
        raise InvalidRange(f"the last day {last} is before the first {first}")
    if last >= LATEST.date():  # its next day may not even be a date (9999-12-31)
        raise InvalidRange(f"the last day must be before {LATEST.date()}")
    return datetime.combine(first, time(), UTC), datetime.combine(last + timedelta(days=1), time(), UTC)


def _sign_in_form(request: Request, token: str | None = None, error: str | None = None, status: int = 200) -> Response:
    """The form, tied to a fresh sign-in cookie; for a read token link, naming its party."""
    authenticator: Authenticator = services_of(request).authenticator
    catalog = services_of(request).catalog_admin.catalog
    party, principal = None, None
    if token:
        try:
            if not token.startswith(tokens.PREFIX):  # a link carries a read token, never a key
                raise Unauthenticated("not a sign-in link")
            principal = _portal_principal(request, token, datetime.now(UTC))
            party = catalog.party(principal.party_id or "")
        except (Unauthenticated, UnknownCustomer):
            authenticator.throttle_failure(client_address(request))
            error = error or "this sign-in link is invalid or has expired: ask for a new one"
    nonce = secrets.token_urlsafe(24)
    answer = render(
        request,
        "sign_in.html",
        Brand.of(catalog, principal),
        status=status,
        signed_in=False,
        csrf=sessions.sign_in_proof(nonce, authenticator.session_key),
        csrf_field=CSRF_FIELD,
        token=token if party else None,
        party=party,
        error=error,
    )
    _set_cookie(request, answer, sessions.SIGN_IN_COOKIE, nonce, sessions.SIGN_IN_LIFETIME)
    return answer


def _set_cookie(request: Request, answer: Response, name: str, value: str, lasts: sessions.Session | timedelta) -> None:
    """``HttpOnly``, ``SameSite=Strict``, ``Secure`` when served over TLS, for the portal's paths."""
    lifetime = lasts if isinstance(lasts, timedelta) else lasts.expires_at - datetime.now(UTC)
    answer.set_cookie(
        name,
        value,
        max_age=max(int(lifetime.total_seconds()), 0),
        path=PREFIX,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
