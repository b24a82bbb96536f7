"""Which invoice documents are emailed, to whom, and how soon a failed send is tried again: the
rules and a delivery's states, apart from the SMTP client and the queue that carry them out
(``api/delivery.py``, ``storage/deliveries.py``)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from billing.catalog import Catalog, Customer
from billing.invoices import InvoiceStatus
from billing.records import credit_note_id

FIRST_DELAY = timedelta(seconds=30)
MAX_DELAY = timedelta(hours=1)


def documents_to_email(invoice_id: str, before: InvoiceStatus, after: InvoiceStatus) -> list[str]:
    """The documents a status change sends: issuing sends the invoice, cancelling an issued
    invoice its credit note; paying, or voiding a draft that no buyer saw, sends nothing."""
    if after is before:
        return []
    if after is InvoiceStatus.ISSUED:
        return [invoice_id]
    if after is InvoiceStatus.VOID and before.owed:
        return [credit_note_id(invoice_id)]
    return []


def recipient_of(catalog: Catalog, buyer_id: str) -> str:
    """The buyer's address; a partner-sold customer without one is reached through its partner
    (empty: nobody to send to, which the delivery shows)."""
    buyer = catalog.party(buyer_id)
    if buyer.email:
        return buyer.email
    if isinstance(buyer, Customer) and buyer.partner_id:
        return catalog.partner(buyer.partner_id).email or ""
    return ""


def retry_delay(failed_attempts: int) -> timedelta:
    """After the first failure 30 s, doubling with each one, never more than an hour apart."""
    if failed_attempts >= 8:  # 30 s x 2^7 is past the hour already: no huge powers
        return MAX_DELAY
    delay: timedelta = FIRST_DELAY * (1 << failed_attempts)
    return min(delay, MAX_DELAY)


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    RETRYING = "retrying"
    NO_RECIPIENT = "no_recipient"


@dataclass(frozen=True)
class Delivery:
    invoice_id: str
    recipient: str
    status: DeliveryStatus
    attempts: int
    last_error: str
    next_attempt_at: datetime
    updated_at: datetime

    def failed(self, error: str, now: datetime) -> Delivery:
        """Tried again after ``retry_delay``."""
        delay = retry_delay(self.attempts)
        return replace(
            self,
            status=DeliveryStatus.RETRYING,
            attempts=self.attempts + 1,
            last_error=error,
            next_attempt_at=now + delay,
            updated_at=now,
        )
