"""The Stripe gateway (``billing.payments.PaymentGateway``), on the official ``stripe`` package.

Every call that moves money carries the payment's idempotency key, and the package retries
network failures with it. Each payment's id travels in the gateway objects' metadata (and a
hosted page's ``client_reference_id``), so a webhook names the payment it settles. Card details
stay with Stripe: meterline sends and keeps a customer's and a card's ids only.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import stripe

from billing.payments import EventKind, GatewayEvent, Payment, PaymentPage, SavedCard, from_minor, to_minor
from meterline.exceptions import BadSignature, GatewayRefused, GatewayUnavailable

SIGNATURE_HEADER = "stripe-signature"
CHECKOUT_ORIGIN = "https://checkout.stripe.com"
SIGNATURE_TOLERANCE_S = 300
"""A webhook signed longer ago than this is refused: a captured one cannot be replayed later."""


class StripeGateway:
    def __init__(
        self,
        name: str,
        api_key: str,
        webhook_secret: str,
        *,
        api_base: str | None = None,
        timeout_s: float = 10,
        network_retries: int = 2,
    ) -> None:
        self.name = name
        self.page_origin = CHECKOUT_ORIGIN
        self._webhook_secret = webhook_secret
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else {},
            max_network_retries=network_retries,
            http_client=stripe.RequestsClient(timeout=timeout_s),
        )

    def charge(self, payment: Payment, card: SavedCard) -> GatewayEvent | None:
        try:
            amount = to_stripe(payment.amount_minor, payment.currency)
        except GatewayRefused as error:  # an amount Stripe cannot take: an answer, a failed attempt
            return self._outcome(payment, EventKind.FAILED, "", str(error))
        params: Any = {
            "amount": amount,
            "currency": payment.currency.lower(),
            "customer": card.customer_ref,
            "payment_method": card.method_ref,
            "off_session": True,
            "confirm": True,
            "metadata": _metadata(payment),
        }
        try:
            intent = self._call(lambda: self._client.v1.payment_intents.create(params, _keyed(payment.payment_id)))
        except stripe.CardError as error:  # declined: an answer, so a failed attempt
            intent_id = getattr(error.error, "payment_intent", None)
            reference = intent_id.id if intent_id is not None else ""
            return self._outcome(payment, EventKind.FAILED, reference, error.user_message or str(error))
        except GatewayRefused as error:  # the request itself refused: an answer too
            return self._outcome(payment, EventKind.FAILED, "", str(error))
        if intent.status == "succeeded":
            return self._outcome(payment, EventKind.SUCCEEDED, intent.id)
        if intent.status in ("requires_payment_method", "requires_action", "canceled"):
            last = intent.last_payment_error
            reason = getattr(last, "message", None) or f"the card needs the buyer ({intent.status})"
            return self._outcome(payment, EventKind.FAILED, intent.id, reason)
        return None  # processing: its webhook says how it ends

    def payment_page(self, payment: Payment, description: str, return_url: str) -> PaymentPage:
        params: Any = {
            "mode": "payment",
            "client_reference_id": payment.payment_id,
            "success_url": return_url,
            "cancel_url": return_url,
            "line_items": [
                {
                    "price_data": {
                        "currency": payment.currency.lower(),
                        "unit_amount": to_stripe(payment.amount_minor, payment.currency),
                        "product_data": {"name": description},
                    },
                    "quantity": 1,
                }
            ],
            "metadata": _metadata(payment),
            "payment_intent_data": {"metadata": _metadata(payment)},
        }
        session = self._call(lambda: self._client.v1.checkout.sessions.create(params, _keyed(payment.payment_id)))
        if not session.url:
            raise GatewayRefused("Stripe made a checkout session without a page to send the buyer to")
        return PaymentPage(reference=session.id, url=session.url)

    def refund(self, payment: Payment, amount_minor: int, key: str) -> GatewayEvent:
        amount = to_stripe(amount_minor, payment.currency)
        params: Any = {"payment_intent": payment.reference, "amount": amount, "metadata": _metadata(payment)}
        refund = self._call(lambda: self._client.v1.refunds.create(params, _keyed(key)))
        if refund.status not in ("succeeded", "pending"):
            raise GatewayRefused(f"Stripe did not refund: the refund is {refund.status}")
        return GatewayEvent(
            gateway=self.name,
            event_id=f"refund:{refund.id}",
            kind=EventKind.REFUNDED,
            payment_id=payment.payment_id,
            reference=payment.reference,
            amount_minor=from_stripe(refund.amount, payment.currency),
            currency=payment.currency,  # a refund is in its payment's currency
            at=datetime.now(UTC),
            refund_id=refund.id,
        )

    def read_webhook(self, body: bytes, headers: Mapping[str, str]) -> GatewayEvent | None:
        _check_not_ahead(headers.get(SIGNATURE_HEADER) or "")
        try:
            event = stripe.Webhook.construct_event(
                body, headers.get(SIGNATURE_HEADER), self._webhook_secret, tolerance=SIGNATURE_TOLERANCE_S
            )
        except stripe.SignatureVerificationError as error:
            raise BadSignature(f"the {SIGNATURE_HEADER} header does not sign this body: {error.user_message}") from None
        except ValueError:
            raise BadSignature("the body is not a Stripe event") from None
        return _event_of(self.name, event.to_dict())

    def _outcome(self, payment: Payment, kind: EventKind, reference: str, reason: str = "") -> GatewayEvent:
        """What a call's answer said, as an event: keyed by the attempt, so the same answer
        read again (a retried call) is the same event."""
        return GatewayEvent(
            gateway=self.name,
            event_id=f"answer:{payment.payment_id}:{kind}",
            kind=kind,
            payment_id=payment.payment_id,
            reference=reference,
            amount_minor=payment.amount_minor,
            currency=payment.currency,
            at=datetime.now(UTC),
            reason=reason,
        )

    @staticmethod
    def _call(call: Any) -> Any:
        try:
            return call()
        except (stripe.APIConnectionError, stripe.RateLimitError) as error:
            raise GatewayUnavailable(f"Stripe did not answer: {error.user_message or error}") from None
        except stripe.APIError as error:  # 5xx
            raise GatewayUnavailable(f"Stripe failed ({error.http_status}): {error.user_message or error}") from None
        except stripe.CardError:
            raise
        except stripe.StripeError as error:
            raise GatewayRefused(f"Stripe refused ({error.http_status}): {error.user_message or error}") from None


ZERO_DECIMAL = frozenset("BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split())
"""Currencies Stripe counts in whole units (its docs' list): MGA among them, which ISO 4217
counts in hundredths."""
WHOLE_IN_HUNDREDTHS = frozenset({"ISK"})
"""Counted in hundredths by Stripe, in whole units by ISO 4217: an amount a multiple of 100."""
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
"""Counted in thousandths, in multiples of ten only."""


def to_stripe(amount_minor: int, currency: str) -> int:
    """An amount in meterline's minor units (ISO 4217's) as Stripe counts it; refused with the
    reason if Stripe cannot take it exactly (10.50 MGA, 5.125 KWD) rather than rounded."""
    places, multiple = _stripe_count(currency)
    amount = from_minor(amount_minor, currency)
    counted = amount.scaleb(places)
    if counted % multiple:
        step = Decimal(multiple).scaleb(-places)
        unit = "whole units" if step == 1 else f"multiples of {step}"
        raise GatewayRefused(f"Stripe takes {currency} in {unit}: {amount} {currency} cannot be paid through it")
    return int(counted)


def from_stripe(amount: int, currency: str) -> int:
    """An amount as Stripe counts it, in meterline's minor units (ISO 4217's)."""
    places, _ = _stripe_count(currency)
    return to_minor(Decimal(amount).scaleb(-places), currency)


def _stripe_count(currency: str) -> tuple[int, int]:
    """The decimal places Stripe counts ``currency`` in, and the multiple of that count an
    amount must be."""
    if currency in ZERO_DECIMAL:
        return 0, 1
    if currency in WHOLE_IN_HUNDREDTHS:
        return 2, 100
    if currency in THREE_DECIMAL:
        return 3, 10
    return 2, 1


def _check_not_ahead(header: str) -> None:
    """The package refuses a signature made too long ago, not one dated ahead: such a webhook,
    signed with a leaked secret, would stay valid for ever. Refused here as well."""
    stamps = [part.removeprefix("t=") for part in header.split(",") if part.startswith("t=")]
    if stamps and stamps[0].isdigit() and int(stamps[0]) > time.time() + SIGNATURE_TOLERANCE_S:
        raise BadSignature(f"the {SIGNATURE_HEADER} header is dated ahead of now")


def _keyed(key: str) -> Any:
    return {"idempotency_key": f"meterline:{key}"}


def _metadata(payment: Payment) -> dict[str, str]:
    return {"meterline_payment_id": payment.payment_id, "meterline_invoice_id": payment.invoice_id}


def _event_of(gateway: str, event: dict[str, Any]) -> GatewayEvent | None:
    """The payment event a Stripe event carries; None for the kinds that settle nothing."""
    kind, thing = event["type"], event["data"]["object"]
    at = datetime.fromtimestamp(int(event["created"]), UTC)
    payment_id = str((thing.get("metadata") or {}).get("meterline_payment_id", ""))

    def made(kind: EventKind, reference: str, amount: int, **more: str) -> GatewayEvent:
        currency = str(thing.get("currency") or "").upper()
        minor = from_stripe(amount, currency)
        return GatewayEvent(gateway, str(event["id"]), kind, payment_id, reference, minor, currency, at, **more)

    if kind == "payment_intent.succeeded":
        return made(EventKind.SUCCEEDED, thing["id"], int(thing["amount_received"]))
    if kind == "payment_intent.payment_failed":
        error = thing.get("last_payment_error") or {}
        return made(EventKind.FAILED, thing["id"], int(thing["amount"]), reason=str(error.get("message") or "declined"))
    if kind in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
        if thing.get("payment_status") != "paid":
            return None  # paid later (a bank debit): its async event says so
        payment_id = payment_id or str(thing.get("client_reference_id") or "")
        return made(EventKind.SUCCEEDED, str(thing.get("payment_intent") or ""), int(thing["amount_total"]))
    if kind in ("refund.created", "refund.updated") and thing.get("status") == "succeeded":
        intent = str(thing.get("payment_intent") or "")
        return made(EventKind.REFUNDED, intent, int(thing["amount"]), refund_id=str(thing["id"]))
    return None
