"""Card payments: a payment page for an invoice or for credit, the payments of a buyer, refunds,
saved cards, and the gateways' webhooks (``api.payments`` carries them out).

A buyer (customer, or partner for its own invoices) pays what it receives; the issuer refunds
what was paid to it and records its buyers' saved cards. Another tenant's payment does not exist.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api.access.audit import note_change
from api.access.guard import Caller, InvoiceReader, Payer, PaymentManager, Public
from api.models import CustomerId, FixedPoint, InvoiceId
from api.payments import Payments, Receipt
from api.routes_credit import Amount, IdempotencyKey, readable_holder
from api.services import services_of
from billing.catalog import Customer, Issuer
from billing.payments import GatewayEvent, Payment, SavedCard, from_minor
from meterline.exceptions import Forbidden, InvalidQuery, UnknownPayment
from meterline.settings import GatewayName

router = APIRouter(prefix="/v1", tags=["payments"])
PaymentId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
GatewayPath = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")]
GatewayRef = Annotated[str, Field(pattern=r"^[A-Za-z0-9_]{1,128}$")]


class PaymentOut(BaseModel):
    payment_id: str
    purpose: str = Field(description="invoice or top_up")
    method: str = Field(description="saved_card (charged automatically) or payment_page")
    holder_id: str
    issuer_id: str
    invoice_id: str = Field(description="Empty for a top-up")
    gateway: str
    currency: str
    amount: FixedPoint
    refunded: FixedPoint
    state: str = Field(description="pending, succeeded, failed, partially_refunded or refunded")
    reference: str = Field(description="The gateway's payment reference, once it has one")
    page_url: str = Field(description="Where the buyer pays, for a payment page")
    note: str = Field(description="Why it failed, or what needs a person (a payment to refund)")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, payment: Payment) -> PaymentOut:
        return cls(
            **{name: getattr(payment, name) for name in ("payment_id", "holder_id", "issuer_id", "invoice_id")},
            **{name: getattr(payment, name) for name in ("gateway", "currency", "reference", "page_url", "note")},
            purpose=payment.purpose.value,
            method=payment.method.value,
            amount=from_minor(payment.amount_minor, payment.currency),
            refunded=from_minor(payment.refunded_minor, payment.currency),
            state=payment.state.value,
            created_at=payment.created_at,
            updated_at=payment.updated_at,
        )


class EventOut(BaseModel):
    event_id: str
    kind: str
    reference: str
    amount: FixedPoint
    currency: str
    at: datetime
    refund_id: str
    reason: str

    @classmethod
    def of(cls, event: GatewayEvent) -> EventOut:
        return cls(
            **{name: getattr(event, name) for name in ("event_id", "reference", "currency", "at", "refund_id")},
            kind=event.kind.value,
            amount=from_minor(event.amount_minor, event.currency),
            reason=event.reason,
        )


class PaymentDetailOut(PaymentOut):
    events: list[EventOut]


class TopUpByCardIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Amount
    currency: str | None = Field(default=None, description="Default, and the only one taken: the holder's currency")


class RefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Amount


class SavedCardIn(BaseModel):
    """The gateway's ids of a buyer's customer record and saved card: never card details."""

    model_config = ConfigDict(extra="forbid")

    gateway: GatewayName
    customer_ref: GatewayRef = Field(description="The gateway's customer (Stripe: cus_...)")
    method_ref: GatewayRef = Field(description="The gateway's saved payment method (Stripe: pm_...)")


class ReceiptOut(BaseModel):
    outcome: str = Field(description="applied, duplicate (kept before: nothing done twice) or ignored")
    payment_id: str
    state: str

    @classmethod
    def of(cls, receipt: Receipt) -> ReceiptOut:
        return cls(outcome=receipt.outcome, payment_id=receipt.payment_id, state=receipt.state)


def payments_of(request: Request) -> Payments:
    return services_of(request).payments


def return_url(request: Request, path: str) -> str:
    """Where the gateway sends the buyer back: this API's public address (not the request's
    Host header, which the caller writes)."""
    return services_of(request).public_url + path


@router.post("/invoices/{invoice_id}/payment-page", response_model=PaymentOut, status_code=201)
def invoice_payment_page(request: Request, caller: Payer, invoice_id: InvoiceId) -> PaymentOut:
    """A page of the issuer's gateway where the buyer pays the invoice's amount due by card; the
    page made before, while it may still be paid."""
    record = services_of(request).ledger.get(caller.scope, invoice_id)
    now = datetime.now(UTC)
    payment = payments_of(request).page_for_invoice(record, return_url(request, f"/portal/invoices/{invoice_id}"), now)
    note_change(request, None, {"payment_id": payment.payment_id, "invoice_id": invoice_id})
    return PaymentOut.of(payment)


@router.post("/credit/{holder_id}/card-top-ups", response_model=PaymentOut, status_code=201)
def top_up_by_card(
    request: Request, caller: Payer, holder_id: CustomerId, body: TopUpByCardIn, idempotency_key: IdempotencyKey
) -> PaymentOut:
    """A payment page buying credit: once paid, a paid grant of the amount, made once however
    often the gateway says so. The same ``Idempotency-Key`` again is the same payment."""
    catalog = readable_holder(request, caller, holder_id)
    payment = payments_of(request).page_for_top_up(
        holder_id,
        body.amount,
        body.currency or catalog.currency_of(holder_id),
        idempotency_key,
        return_url(request, "/portal/credit"),
        datetime.now(UTC),
    )
    note_change(request, None, {"payment_id": payment.payment_id, "holder_id": holder_id})
    return PaymentOut.of(payment)


@router.get("/payments", response_model=list[PaymentOut])
def list_payments(
    request: Request,
    caller: InvoiceReader,
    holder_id: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[PaymentOut]:
    """The newest payments the caller sees: its own, a partner's customers' too, everyone's for the provider."""
    scope = caller.scope
    if holder_id is not None and not scope.sees_party(holder_id):
        return []
    holders = [holder_id] if holder_id is not None else None if scope.everything else sorted(scope.parties or ())
    return [PaymentOut.of(p) for p in payments_of(request).store.of_holders(holders, limit)]


@router.get("/payments/{payment_id}", response_model=PaymentDetailOut)
def get_payment(request: Request, caller: InvoiceReader, payment_id: PaymentId) -> PaymentDetailOut:
    payment = visible_payment(request, caller, payment_id)
    events = [EventOut.of(event) for event in payments_of(request).store.events(payment)]
    return PaymentDetailOut(**PaymentOut.of(payment).model_dump(), events=events)


@router.post("/payments/{payment_id}/refunds", response_model=PaymentOut)
def refund(request: Request, caller: PaymentManager, payment_id: PaymentId, body: RefundIn) -> PaymentOut:
    """Give back part or all of a succeeded payment, through its gateway: at most what was paid
    less what was refunded; a top-up in full (its grant is voided)."""
    payment = visible_payment(request, caller, payment_id)
    if not caller.scope.may_change_invoice(payment.issuer_id, payment.holder_id):
        raise Forbidden(f"payment {payment_id} was made to {payment.issuer_id}; only it refunds it")
    before = PaymentOut.of(payment).model_dump(mode="json")
    refunded = payments_of(request).refund(payment.payment_id, body.amount, datetime.now(UTC))
    note_change(request, before, PaymentOut.of(refunded).model_dump(mode="json"))
    return PaymentOut.of(refunded)


@router.put("/customers/{customer_id}/saved-card", status_code=204)
def save_card(request: Request, caller: PaymentManager, customer_id: CustomerId, body: SavedCardIn) -> None:
    """Record the card a customer saved with its seller's gateway: its issued invoices are
    charged to it automatically."""
    seller = _sellers_customer(request, caller, customer_id)
    if body.gateway not in seller.payment.gateways:
        raise InvalidQuery(f"{seller.name} takes no payments through gateway {body.gateway!r}")
    card = SavedCard(customer_id, body.gateway, body.customer_ref, body.method_ref)
    payments_of(request).save_card(card, datetime.now(UTC))
    note_change(request, None, {"customer_id": customer_id, "gateway": body.gateway})


@router.delete("/customers/{customer_id}/saved-card", status_code=204)
def remove_card(request: Request, caller: PaymentManager, customer_id: CustomerId) -> None:
    _sellers_customer(request, caller, customer_id)
    payments_of(request).remove_card(customer_id, datetime.now(UTC))
    note_change(request, {"customer_id": customer_id}, None)


@router.post("/payments/webhooks/{gateway}", response_model=ReceiptOut, dependencies=[Depends(Public())])
async def gateway_webhook(request: Request, gateway: GatewayPath) -> ReceiptOut:
    """A gateway's event, signed with its webhook secret: a bad signature is 400 and changes
    nothing; an event already received is answered ``duplicate`` and done nothing with."""
    body = await request.body()
    headers = {name.lower(): value for name, value in request.headers.items()}
    receipt = await run_in_threadpool(payments_of(request).receive, gateway, body, headers, datetime.now(UTC))
    return ReceiptOut.of(receipt)


def visible_payment(request: Request, caller: Caller, payment_id: str) -> Payment:
    payment = payments_of(request).store.get(payment_id)
    if payment is None or not caller.scope.sees_party(payment.holder_id):
        raise UnknownPayment(f"no payment {payment_id!r}")
    return payment


def _sellers_customer(request: Request, caller: Caller, customer_id: str) -> Issuer:
    catalog = readable_holder(request, caller, customer_id)
    customer = catalog.party(customer_id)
    if not isinstance(customer, Customer):
        raise InvalidQuery(f"{customer_id} is not a customer")
    seller = catalog.seller_of(customer)
    if not caller.scope.may_change_invoice(seller.id, customer_id):
        raise Forbidden(f"{customer_id} buys from {seller.id}; only it records the customer's card")
    return seller
