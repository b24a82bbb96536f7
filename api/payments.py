"""Card payments carried out: payment pages for invoices and top-ups, automatic charges of saved
cards with retries, refunds, and the gateways' webhooks settling each payment exactly once.

Every gateway event - a webhook, or a call's answer - goes through ``settle``: kept once, in the
audit log, and applied to its payment under one lock across processes; the payment's new state
then moves its invoice (paid, payment_failed, refunded) or makes its credit grant. Each of those
steps is idempotent, so an event delivered twice, or a settlement cut short and done again,
pays nothing twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from starlette.concurrency import run_in_threadpool

from api.credit_accounts import CreditAccounts, GrantRequest
from billing.adapters.stripe_gateway import StripeGateway
from billing.catalog import Catalog, Customer, Issuer
from billing.credits import EntryKind
from billing.invoices import DocumentType, InvoiceStatus
from billing.money import round_money
from billing.payments import (
    GatewayEvent,
    Payment,
    PaymentGateway,
    PaymentMethod,
    PaymentPurpose,
    PaymentState,
    SavedCard,
    card_payable,
    from_minor,
    mismatch,
    next_charge_at,
    to_minor,
)
from billing.records import InvoiceRecord
from billing.scope import EVERYTHING
from meterline.exceptions import (
    GatewayUnavailable,
    InvalidQuery,
    InvoiceStateError,
    PaymentMismatch,
    UnknownPayment,
)
from meterline.settings import PaymentSettings
from storage.audit_log import AuditLog, encoded
from storage.ledger import Ledger
from storage.payments import PaymentStore

log = logging.getLogger(__name__)
UNANSWERED = "unanswered"
PAGE_REUSED_FOR = timedelta(hours=23)
"""A payment page not paid is offered again for this long (Stripe's pages expire after 24 h)."""


@dataclass(frozen=True)
class Receipt:
    """What meterline made of a gateway event: its answer to the webhook."""

    outcome: str
    """applied, duplicate, or ignored (not a payment of meterline's, or a kind it does not act on)."""
    payment_id: str = ""
    state: str = ""


def gateways_of(settings: PaymentSettings) -> dict[str, PaymentGateway]:
    return {
        name: StripeGateway(
            name,
            gateway.api_key.get_secret_value(),
            gateway.webhook_secret.get_secret_value(),
            api_base=gateway.api_base,
            timeout_s=gateway.timeout_s,
            network_retries=gateway.network_retries,
        )
        for name, gateway in settings.gateways.items()
    }


class Payments:
    def __init__(
        self,
        store: PaymentStore,
        gateways: Mapping[str, PaymentGateway],
        ledger: Ledger,
        credit: CreditAccounts,
        audit_log: AuditLog,
        current_catalog: Callable[[], Catalog],
        public_url: str,
        link_secret: bytes,
    ) -> None:
        """``link_secret`` signs payment links: a link names its invoice, and works for it only."""
        self.store = store
        self._public_url = public_url
        self._link_key = hmac.new(link_secret, b"meterline payment links", hashlib.sha256).digest()
        self._gateways = gateways
        self._ledger = ledger
        self._credit = credit
        self._audit_log = audit_log
        self._catalog = current_catalog

    def gateway(self, name: str) -> PaymentGateway:
        found = self._gateways.get(name)
        if found is None:
            raise UnknownPayment(f"no payment gateway {name!r} here")
        return found

    def takes_cards(self, issuer: Issuer) -> bool:
        return any(name in self._gateways for name in issuer.payment.gateways[:1])

    def page_origins(self, issuer: Issuer) -> tuple[str, ...]:
        """Where the issuer's payment pages are, if it takes cards: what a payment form leads to."""
        return (self._gateway_of(issuer).page_origin,) if self.takes_cards(issuer) else ()

    def _gateway_of(self, issuer: Issuer) -> PaymentGateway:
        if not self.takes_cards(issuer):
            raise InvalidQuery(f"{issuer.name} takes no card payments here: pay by bank transfer")
        return self._gateways[issuer.payment.gateways[0]]

    def pay_link(self, record: InvoiceRecord) -> str | None:
        """The link printed on an invoice that its issuer takes cards for, while it is owed:
        anyone holding it may pay that invoice (and see what it asks), nothing else."""
        issuer = self._catalog().issuer(record.issuer_id)
        if record.document_type is not DocumentType.INVOICE or not record.status.owed or not self.takes_cards(issuer):
            return None
        return f"{self._public_url}/portal/pay/{record.invoice_id}/{self.link_mac(record.invoice_id)}"

    def link_mac(self, invoice_id: str) -> str:
        return hmac.new(self._link_key, invoice_id.encode(), hashlib.sha256).hexdigest()[:32]

    # -- payments asked for ------------------------------------------------------------------

    def page_for_invoice(self, record: InvoiceRecord, return_url: str, now: datetime) -> Payment:
        """A payment page for what ``record`` asks; the page made before, while it may be paid."""
        if not record.status.owed or record.amount_due <= 0:
            raise InvoiceStateError(f"invoice {record.number or record.invoice_id} is {record.status}: nothing to pay")
        issuer = self._catalog().issuer(record.issuer_id)
        gateway = self._gateway_of(issuer)
        amount = to_minor(record.amount_due, record.currency)
        for made in self.store.of_invoice(record.invoice_id):
            reusable = made.method is PaymentMethod.PAYMENT_PAGE and made.state is PaymentState.PENDING
            if reusable and made.amount_minor == amount and now - made.created_at < PAGE_REUSED_FOR and made.page_url:
                return made
        payment = Payment.of_invoice(
            record, f"pay-{secrets.token_hex(10)}", PaymentMethod.PAYMENT_PAGE, gateway.name, now
        )
        description = f"Invoice {record.number} from {issuer.name}"
        return self._with_page(gateway, payment, description, return_url)

    def page_for_top_up(
        self, holder_id: str, amount: Decimal, currency: str, key: str, return_url: str, now: datetime
    ) -> Payment:
        """A payment page buying ``amount`` of credit; the same ``key`` again is the same payment."""
        catalog = self._catalog()
        if currency != catalog.currency_of(holder_id):
            raise InvalidQuery(f"{holder_id} is billed in {catalog.currency_of(holder_id)}, not {currency}")
        amount_minor = to_minor(amount, currency)
        payment_id = "top-" + hashlib.sha256(f"{holder_id}\n{key}".encode()).hexdigest()[:24]
        made = self.store.get(payment_id)
        if made is not None:
            if (made.holder_id, made.amount_minor, made.currency) != (holder_id, amount_minor, currency):
                raise InvalidQuery(f"idempotency key {key!r} was used for another top-up")
            if made.page_url or made.state is not PaymentState.PENDING:
                return made
        holder = catalog.party(holder_id)
        issuer = catalog.seller_of(holder) if isinstance(holder, Customer) else catalog.provider
        gateway = self._gateway_of(issuer)
        payment = made or Payment(
            payment_id=payment_id,
            purpose=PaymentPurpose.TOP_UP,
            method=PaymentMethod.PAYMENT_PAGE,
            holder_id=holder_id,
            issuer_id=issuer.id,
            invoice_id="",
            gateway=gateway.name,
            currency=currency,
            amount_minor=amount_minor,
            created_at=now,
            updated_at=now,
        )
        return self._with_page(gateway, payment, f"Prepaid credit from {issuer.name}", return_url)

    def _with_page(self, gateway: PaymentGateway, payment: Payment, description: str, return_url: str) -> Payment:
        self.store.save(payment)  # kept before the call: a page the gateway made is never lost track of
        page = gateway.payment_page(payment, description, return_url)
        with_page = replace(payment, page_url=page.url, updated_at=datetime.now(UTC))
        self.store.save(with_page)
        self._audit(f"page:{payment.payment_id}", payment.gateway, None, _shown(with_page))
        return with_page

    # -- automatic charges -------------------------------------------------------------------

    def charge_due(self, now: datetime) -> list[Payment]:
        """Charge each owed invoice of a buyer with a saved card, when its next try is due; make
        again the calls the gateway did not answer. Returns the charges tried."""
        unanswered = self._unanswered()
        cards = self.store.cards(sorted({payment.holder_id for payment in unanswered})) if unanswered else {}
        tried = [self._charge(payment, cards.get(payment.holder_id), now) for payment in unanswered]
        for payment, card in self._due_charges(now):
            self.store.save(payment)
            tried.append(self._charge(payment, card, now))
        return tried

    def _due_charges(self, now: datetime) -> Iterator[tuple[Payment, SavedCard]]:
        """The next automatic charge of each owed invoice whose buyer saved a card with its
        issuer's gateway, when it is due: not while another payment of it may still succeed."""
        catalog = self._catalog()
        owed = [
            record
            for record in self._ledger.headers(EVERYTHING)
            if record.status in (InvoiceStatus.ISSUED, InvoiceStatus.PAYMENT_FAILED) and record.amount_due > 0
        ]
        cards = self.store.cards(sorted({record.buyer_id for record in owed})) if owed else {}
        for record in owed:
            card, issuer = cards.get(record.buyer_id), catalog.issuer(record.issuer_id)
            if card is None or not self.takes_cards(issuer) or card.gateway != issuer.payment.gateways[0]:
                continue
            if not card_payable(to_minor(record.amount_due, record.currency)):
                continue  # above what one card payment may be: paid by transfer
            payments = self.store.of_invoice(record.invoice_id)
            if any(may_still_pay(p, now) for p in payments):
                continue
            charges = [p for p in payments if p.method is PaymentMethod.SAVED_CARD]
            due = next_charge_at([p.created_at for p in charges]) if charges else now
            if due is None or due > now:
                continue
            charge_id = f"{record.invoice_id}.charge{len(charges) + 1}"
            yield Payment.of_invoice(record, charge_id, PaymentMethod.SAVED_CARD, card.gateway, now), card

    def _unanswered(self) -> list[Payment]:
        """Charges the gateway did not answer: made again at the next run, with the same
        idempotency key, so one that did go through is not made twice."""
        return [payment for payment in self.store.pending_charges() if payment.note.startswith(UNANSWERED)]

    def _charge(self, payment: Payment, card: SavedCard | None, now: datetime) -> Payment:
        """One try of a charge with the buyer's saved card (none, or one with another gateway:
        not tried, the buyer pays through the link)."""
        if card is None or card.gateway != payment.gateway:
            return payment
        try:
            outcome = self.gateway(payment.gateway).charge(payment, card)
        except GatewayUnavailable as error:  # unknown whether it went through: the same key again later
            waiting = replace(payment, note=f"{UNANSWERED}: {error}", updated_at=now)
            self.store.save(waiting)
            self._audit(f"charge:{payment.payment_id}", payment.gateway, None, _shown(waiting))
            return waiting
        if outcome is None:
            processing = replace(payment, note="processing", updated_at=now)
            self.store.save(processing)
            return processing
        self.settle(outcome, now)
        return self.store.get(payment.payment_id) or payment

    # -- refunds and saved cards ---------------------------------------------------------------

    def refund(self, payment_id: str, amount: Decimal, now: datetime) -> Payment:
        """Give back ``amount`` of a succeeded payment: at most what was paid less what was
        refunded. Checked, asked of the gateway and settled under the settlement lock, so two
        refunds at once cannot both pass the check."""
        with self.store.settling():
            payment = self.store.get(payment_id)
            if payment is None:
                raise UnknownPayment(f"no payment {payment_id!r}")
            amount_minor = to_minor(amount, payment.currency)
            payment.check_refund(amount_minor, self._grant_holds(payment, now))
            key = f"{payment.payment_id}:refund:{payment.refunded_minor}:{amount_minor}"
            self._settle(self.gateway(payment.gateway).refund(payment, amount_minor, key), now)
            return self.store.get(payment.payment_id) or payment

    def _grant_holds(self, payment: Payment, now: datetime) -> int | None:
        """What a top-up's grant still holds, in minor units (None: not a top-up)."""
        if payment.purpose is not PaymentPurpose.TOP_UP:
            return None
        wallet = self._credit.wallets({payment.holder_id}, now).get(payment.holder_id)
        held = wallet.remaining(now).get(_top_up_request(payment).grant_id(), Decimal(0)) if wallet else Decimal(0)
        return to_minor(round_money(held, payment.currency), payment.currency)

    def save_card(self, card: SavedCard, now: datetime) -> None:
        self.gateway(card.gateway)
        self.store.save_card(card, removed=False, now=now)

    def remove_card(self, holder_id: str, now: datetime) -> None:
        for card in self.store.cards([holder_id]).values():
            self.store.save_card(card, removed=True, now=now)

    # -- gateway events ----------------------------------------------------------------------

    def receive(self, gateway_name: str, body: bytes, headers: Mapping[str, str], now: datetime) -> Receipt:
        """A webhook: checked against its gateway's signing secret (BadSignature), then settled."""
        event = self.gateway(gateway_name).read_webhook(body, headers)
        if event is None:
            return Receipt("ignored")
        return self.settle(event, now)

    def settle(self, event: GatewayEvent, now: datetime) -> Receipt:
        """Keep ``event`` once and apply it to its payment; PaymentMismatch for one that cannot
        be its payment's (kept, with the reason, for a person to look at)."""
        with self.store.settling():
            return self._settle(event, now)

    def _settle(self, event: GatewayEvent, now: datetime) -> Receipt:
        """``settle``, its caller holding the settlement lock."""
        payment = self.store.get(event.payment_id) if event.payment_id else None
        if payment is None and event.reference:
            payment = self.store.by_reference(event.gateway, event.reference)
        if payment is None:
            self.store.add_event(event, now, refused="no payment of meterline's")
            self._audit(event.event_id, event.gateway, None, {"ignored": _event_shown(event)})
            return Receipt("ignored")
        reason = mismatch(payment, event)
        if reason is not None:
            if self.store.add_event(event, now, refused=reason):
                self._audit(event.event_id, event.gateway, _shown(payment), {"refused": reason})
            raise PaymentMismatch(f"payment {payment.payment_id}: {reason}; nothing was applied")
        new = self.store.add_event(event, now, refused="")
        settled = payment.settled_by(self.store.events(payment), now)
        if settled != payment:
            self.store.save(settled)
        if new:
            self._audit(event.event_id, event.gateway, _shown(payment), _shown(settled))
        self._apply(settled, now)
        return Receipt("applied" if new else "duplicate", settled.payment_id, settled.state.value)

    def _apply(self, payment: Payment, now: datetime) -> None:
        """What the payment's state means for its invoice or its credit; each step idempotent."""
        if payment.purpose is PaymentPurpose.TOP_UP:
            self._apply_top_up(payment, now)
            return
        record = self._ledger.get(EVERYTHING, payment.invoice_id)
        paid = payment.state in (PaymentState.SUCCEEDED, PaymentState.PARTIALLY_REFUNDED)
        if paid and record.status is InvoiceStatus.PAID and record.payment_reference == payment.reference:
            return
        if paid and not record.status.owed:  # paid twice, or after it was voided: money to give back
            was = f"paid already ({record.payment_reference or 'by transfer'})"
            status = was if record.status is InvoiceStatus.PAID else record.status
            note = f"to refund: invoice {record.number} is {status}"
            if payment.note != note:
                self.store.save(replace(payment, note=note, updated_at=now))
            return
        if paid:
            target = InvoiceStatus.PAID
        elif payment.state is PaymentState.FAILED and record.status is InvoiceStatus.ISSUED:
            target = InvoiceStatus.PAYMENT_FAILED
        elif payment.state is PaymentState.REFUNDED and record.status is InvoiceStatus.PAID:
            if record.payment_reference != payment.reference:
                return
            target = InvoiceStatus.REFUNDED
        else:
            return
        prefixes = self._catalog().invoice_prefixes()
        reference = payment.reference if target is InvoiceStatus.PAID else None  # a failure is no payment
        self._ledger.change_status(EVERYTHING, record.invoice_id, target, now, prefixes, reference)

    def _apply_top_up(self, payment: Payment, now: datetime) -> None:
        if payment.state is PaymentState.PENDING or payment.state is PaymentState.FAILED:
            return
        made = self._credit.grant(_top_up_request(payment), EntryKind.TOP_UP, f"gateway:{payment.gateway}", now)
        if payment.state is PaymentState.REFUNDED:
            self._credit.void(payment.holder_id, made.grant.grant_id, now)

    def _audit(self, event_id: str, gateway: str, before: Any, after: Any) -> None:
        row = {
            "at": datetime.now(UTC),
            "key_id": f"gateway:{gateway}",
            "role": "gateway",
            "party_id": "",
            "method": "EVENT",
            "route": "payments",
            "path": event_id,
            "status": 200,
            "before": encoded(before),
            "after": encoded(after),
        }
        self._audit_log.append_after_change(row)


def _top_up_request(payment: Payment) -> GrantRequest:
    """The grant a top-up's payment makes: its id derived from the payment, so made once."""
    amount = from_minor(payment.amount_minor, payment.currency)
    return GrantRequest(
        holder_id=payment.holder_id,
        currency=payment.currency,
        amount=amount,
        effective_at=payment.created_at,
        expires_at=None,
        priority=0,
        scope=frozenset(),
        paid=True,
        paid_amount=amount,
        idempotency_key=f"payment/{payment.payment_id}",
        asked=json.dumps({"payment_id": payment.payment_id}),
    )


async def charge_when_due(payments: Payments, check_every_s: float) -> None:
    """Charge saved cards when due, forever; a run that fails (storage or gateway away) is
    logged and done again at the next interval."""
    while True:
        await asyncio.sleep(check_every_s)
        try:
            await run_in_threadpool(payments.charge_due, datetime.now(UTC))
        except Exception:
            log.exception("charging saved cards failed; trying again in %.1f s", check_every_s)


def may_still_pay(payment: Payment, now: datetime) -> bool:
    """A charge whose outcome is not known, or a payment page the buyer may be paying on (one
    the gateway never made, being down, is none)."""
    if payment.state is not PaymentState.PENDING:
        return False
    if payment.method is PaymentMethod.SAVED_CARD:
        return True
    return bool(payment.page_url) and now - payment.created_at < PAGE_REUSED_FOR


def _shown(payment: Payment) -> dict[str, Any]:
    return {
        "payment_id": payment.payment_id,
        "state": payment.state.value,
        "amount_minor": payment.amount_minor,
        "refunded_minor": payment.refunded_minor,
        "currency": payment.currency,
        "reference": payment.reference,
        "note": payment.note,
    }


def _event_shown(event: GatewayEvent) -> dict[str, Any]:
    return {"event_id": event.event_id, "kind": event.kind.value, "reference": event.reference}
