"""Card payments: what a payment is, how a gateway's events settle it, and when a failed
automatic charge is tried again. The rules, apart from the gateways that carry them out
(``billing/adapters/stripe_gateway.py``) and the store (``storage/payments.py``).

Amounts travel as integers of the currency's minor unit (cents, yen), as gateways take them: an
amount that is not a whole number of minor units is refused, never rounded on the way.

A payment's state is a function of the *set* of its gateway events: a webhook delivered twice, a
failure that arrives after the success, or a refund before the payment it refunds, all settle it
the same way. A payment succeeds once (by its gateway reference), and each refund counts once (by
its refund id), however many events or answers report them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from billing.money import minor_unit
from billing.records import InvoiceRecord
from meterline.exceptions import InvalidQuery

CHARGE_DELAYS = (timedelta(hours=1), timedelta(hours=6), timedelta(days=1), timedelta(days=3))
"""How long after each failed automatic charge of an invoice the next is tried: four retries
over about four days, then the invoice waits for its buyer (the payment link still works)."""
MAX_CHARGES = len(CHARGE_DELAYS) + 1
MAX_CARD_MINOR = 99_999_999
"""The most one card payment may be, in minor units (Stripe's limit: 999,999.99 EUR): above it,
a payment is refused before any gateway is asked, and an invoice is paid by transfer."""


class PaymentPurpose(StrEnum):
    INVOICE = "invoice"
    """Pays an issued invoice's amount due."""
    TOP_UP = "top_up"
    """Buys prepaid credit: a paid grant of the amount, made once the payment succeeds."""


class PaymentMethod(StrEnum):
    SAVED_CARD = "saved_card"
    """Charged by meterline, off session, to the card the buyer saved with the gateway."""
    PAYMENT_PAGE = "payment_page"
    """Paid by the buyer on the gateway's hosted page."""


class PaymentState(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


class EventKind(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUNDED = "refunded"


def to_minor(amount: Decimal, currency: str) -> int:
    """``amount`` in the currency's minor unit: 12.34 EUR is 1234, 500 JPY is 500."""
    units = amount / minor_unit(currency)
    if units != units.to_integral_value():
        raise InvalidQuery(f"{amount} {currency} is not a whole number of {minor_unit(currency)} {currency}")
    return int(units)


def from_minor(units: int, currency: str) -> Decimal:
    return Decimal(units) * minor_unit(currency)


@dataclass(frozen=True)
class SavedCard:
    """A card the buyer saved with a gateway, as the gateway's references only: meterline never
    sees nor keeps card numbers."""

    holder_id: str
    gateway: str
    customer_ref: str
    method_ref: str


@dataclass(frozen=True)
class GatewayEvent:
    """What a gateway said about a payment: in a webhook, or in its answer to a call."""

    gateway: str
    event_id: str
    """Unique per gateway: the same id again is the same event, kept once."""
    kind: EventKind
    payment_id: str
    """Ours, as the gateway echoes it back (empty: the gateway's reference names the payment)."""
    reference: str
    """The gateway's payment (a Stripe PaymentIntent id)."""
    amount_minor: int
    """Paid, for a success; given back by this refund, for a refund."""
    currency: str
    at: datetime
    refund_id: str = ""
    reason: str = ""


@dataclass(frozen=True)
class PaymentPage:
    reference: str
    url: str


class PaymentGateway(Protocol):
    """What meterline asks of a card payment service. Every call that moves money carries an
    idempotency key: made again after a timeout, it is done once."""

    name: str
    page_origin: str
    """Where its payment pages are (``https://host``): where the portal's payment forms lead."""

    def charge(self, payment: Payment, card: SavedCard) -> GatewayEvent | None:
        """Charge a saved card off session: the outcome when the answer says it (succeeded, or
        failed: declined or the request refused), None while the gateway is still processing (a
        webhook will say); GatewayUnavailable when there is no answer."""
        ...

    def payment_page(self, payment: Payment, description: str, return_url: str) -> PaymentPage: ...

    def refund(self, payment: Payment, amount_minor: int, key: str) -> GatewayEvent:
        """Give back ``amount_minor`` of a succeeded payment; the refund event once it is done."""
        ...

    def read_webhook(self, body: bytes, headers: Mapping[str, str]) -> GatewayEvent | None:
        """The event a signed webhook carries (None: a kind of event meterline does not act on),
        or BadSignature."""
        ...


@dataclass(frozen=True)
class Payment:
    """One attempt to collect money through a gateway, and what its events made of it."""

    payment_id: str
    purpose: PaymentPurpose
    method: PaymentMethod
    holder_id: str
    """Who pays: the invoice's buyer, or the holder of the credit bought."""
    issuer_id: str
    """Who is paid: the invoice's issuer, or the holder's seller."""
    invoice_id: str
    """The invoice paid; empty for a top-up."""
    gateway: str
    currency: str
    amount_minor: int
    created_at: datetime
    updated_at: datetime
    reference: str = ""
    page_url: str = ""
    state: PaymentState = PaymentState.PENDING
    refunded_minor: int = 0
    note: str = ""
    """The last thing that went wrong or needs a person: a decline, an unreachable gateway."""

    @classmethod
    def of_invoice(
        cls, record: InvoiceRecord, payment_id: str, method: PaymentMethod, gateway: str, now: datetime
    ) -> Payment:
        """A payment of what an invoice asks, by its buyer to its issuer."""
        return cls(
            payment_id=payment_id,
            purpose=PaymentPurpose.INVOICE,
            method=method,
            holder_id=record.buyer_id,
            issuer_id=record.issuer_id,
            invoice_id=record.invoice_id,
            gateway=gateway,
            currency=record.currency,
            amount_minor=to_minor(record.amount_due, record.currency),
            created_at=now,
            updated_at=now,
        )

    def __post_init__(self) -> None:
        if not card_payable(self.amount_minor):
            shown = from_minor(self.amount_minor, self.currency)
            most = from_minor(MAX_CARD_MINOR, self.currency)
            raise InvalidQuery(
                f"{shown} {self.currency} cannot be paid by card: one card payment is above zero and at most {most}"
            )

    @property
    def refundable_minor(self) -> int:
        paid = self.state in (PaymentState.SUCCEEDED, PaymentState.PARTIALLY_REFUNDED)
        return self.amount_minor - self.refunded_minor if paid else 0

    def settled_by(self, events: Iterable[GatewayEvent], now: datetime) -> Payment:
        """The payment as its events leave it, in whatever order and however often they came.
        Events that do not match it (``mismatch``) are left out."""
        own = [event for event in events if mismatch(self, event) is None]
        reference = self.reference or next((e.reference for e in own if e.reference), "")
        succeeded = any(event.kind is EventKind.SUCCEEDED for event in own)
        refunds = {event.refund_id: event.amount_minor for event in own if event.kind is EventKind.REFUNDED}
        failures = [event for event in own if event.kind is EventKind.FAILED]
        refunded = sum(refunds.values())
        if succeeded and refunded >= self.amount_minor:
            state = PaymentState.REFUNDED
        elif succeeded and refunded:
            state = PaymentState.PARTIALLY_REFUNDED
        elif succeeded:
            state = PaymentState.SUCCEEDED
        elif failures:
            state = PaymentState.FAILED
        else:
            state = PaymentState.PENDING
        note = self.note
        paid_by = sorted({event.reference for event in own if event.kind is EventKind.SUCCEEDED})
        if len(paid_by) > 1:  # the buyer paid twice (two gateway payments): money to give back
            note = f"to refund: paid {len(paid_by)} times ({', '.join(paid_by)}); one is counted"
        elif state is PaymentState.FAILED:
            note = max(failures, key=lambda event: (event.at, event.event_id)).reason or "declined"
        elif state is not PaymentState.PENDING and not note.startswith("to refund"):
            note = ""
        changed = replace(self, reference=reference, state=state, refunded_minor=refunded, note=note)
        return changed if changed == self else replace(changed, updated_at=now)

    def check_refund(self, amount_minor: int, grant_holds_minor: int | None = None) -> None:
        """InvalidQuery unless ``amount_minor`` can be given back: above zero, and at most what
        was paid less what was refunded already. A top-up gives back what its grant still holds
        (``grant_holds_minor``), all of it: the grant is voided with the refund."""
        if amount_minor <= 0:
            raise InvalidQuery("a refund must be above zero")
        if self.refundable_minor == 0:
            raise InvalidQuery(f"payment {self.payment_id} is {self.state}: there is nothing to refund")
        if amount_minor > self.refundable_minor:
            left = from_minor(self.refundable_minor, self.currency)
            raise InvalidQuery(
                f"payment {self.payment_id}: at most {left} {self.currency} can be refunded "
                f"(paid {from_minor(self.amount_minor, self.currency)}, "
                f"refunded {from_minor(self.refunded_minor, self.currency)})"
            )
        if self.purpose is PaymentPurpose.TOP_UP:
            holds = from_minor(grant_holds_minor or 0, self.currency)
            if not grant_holds_minor:
                raise InvalidQuery(f"payment {self.payment_id}: its credit was used up, so nothing is refunded")
            if amount_minor != grant_holds_minor:
                raise InvalidQuery(
                    f"payment {self.payment_id}: a top-up is refunded for what its credit still holds, "
                    f"{holds} {self.currency}, all of it (its grant is voided with it)"
                )


def card_payable(amount_minor: int) -> bool:
    return 0 < amount_minor <= MAX_CARD_MINOR


def mismatch(payment: Payment, event: GatewayEvent) -> str | None:
    """Why an event cannot be this payment's (None: it can)."""
    if event.gateway != payment.gateway:
        return f"the event came from gateway {event.gateway!r}, the payment is with {payment.gateway!r}"
    if event.currency != payment.currency:
        return f"the event is in {event.currency}, the payment in {payment.currency}"
    if event.kind is EventKind.SUCCEEDED and event.amount_minor != payment.amount_minor:
        paid, asked = (from_minor(n, payment.currency) for n in (event.amount_minor, payment.amount_minor))
        return f"{paid} {payment.currency} was paid, the payment asked {asked}"
    if event.kind is EventKind.REFUNDED and not event.refund_id:
        return "a refund event names no refund"
    return None


def next_charge_at(failed_charges: list[datetime]) -> datetime | None:
    """When an invoice whose automatic charges failed at ``failed_charges`` is charged again
    (None: no more tries, the buyer pays through the link)."""
    if not failed_charges:
        return None
    if len(failed_charges) >= MAX_CHARGES:
        return None
    return max(failed_charges) + CHARGE_DELAYS[len(failed_charges) - 1]
