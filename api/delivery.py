"""Email issued invoices and credit notes over SMTP; retry failures, and keep them visible.

Issuing queues a delivery (a row in ``invoice_deliveries``); a background loop sends what is
due. A failed attempt is recorded with its error and tried again later, with a growing delay,
so a broken mail server delays invoices but never loses one: ``GET /v1/invoices/{id}/delivery``
and ``meterline_invoice_deliveries_total{outcome}`` show where each stands.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage

from starlette.concurrency import run_in_threadpool

from api import metrics
from api.documents.einvoice import pdf_for_buyer
from api.documents.html import render_html
from api.documents.view import InvoiceView
from billing.catalog import Catalog
from billing.mailing import Delivery, DeliveryStatus
from billing.records import InvoiceRecord
from billing.scope import EVERYTHING
from meterline.exceptions import UnknownInvoice
from meterline.settings import SmtpSettings
from storage.deliveries import DeliveryRecords
from storage.ledger import Ledger

log = logging.getLogger(__name__)


def invoice_message(view: InvoiceView, sender: str, recipient: str, pdf: bytes) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"{view.issuer.name} <{sender}>"
    message["To"] = recipient
    message["Subject"] = f"{view.title} from {view.issuer.name}, period {view.record.period}"
    text = (
        f"Please find attached {view.title.lower()} for {view.record.period}: "
        f"{view.shown_money(view.record.total)} {view.record.currency}, due {view.due_date}."
    )
    if view.pay_link and view.asks_payment:
        text += f"\n\nPay by card: {view.pay_link}"
    message.set_content(text)
    message.add_alternative(render_html(view), subtype="html")
    name = view.record.number or view.record.invoice_id
    message.add_attachment(pdf, maintype="application", subtype="pdf", filename=f"{name}.pdf")
    return message


class Deliveries:
    def __init__(
        self,
        records: DeliveryRecords,
        smtp: SmtpSettings,
        pay_link: Callable[[InvoiceRecord], str | None] = lambda record: None,
    ) -> None:
        """``pay_link``: the card payment link an invoice's email and PDF carry, if any."""
        self._records = records
        self._smtp = smtp
        self._pay_link = pay_link
        # one attempt or retry request at a time: a retry asked for during an attempt waits for
        # its outcome to be stored, rather than being overwritten by it
        self._attempt = threading.Lock()

    def enqueue(self, recipients: dict[str, str], now: datetime) -> None:
        """Queue one email per invoice id, to its recipient (an empty address is kept as such)."""
        self._records.save(
            *(
                Delivery(invoice_id, to, DeliveryStatus.PENDING if to else DeliveryStatus.NO_RECIPIENT, 0, "", now, now)
                for invoice_id, to in recipients.items()
            )
        )

    def of(self, invoice: InvoiceRecord) -> Delivery:
        """The email of an invoice the caller was allowed to read (see ``Ledger.get``)."""
        return self._get(invoice.invoice_id)

    def retry_now(self, invoice: InvoiceRecord) -> tuple[Delivery, Delivery]:
        """Due at once; returns the delivery before and after. The time is read under the lock:
        a row stamped before an attempt that was in flight would lose to that attempt's row
        (the latest ``updated_at`` wins)."""
        with self._attempt:
            now = datetime.now(UTC)
            before = self._get(invoice.invoice_id)
            delivery = replace(before, status=DeliveryStatus.PENDING, next_attempt_at=now, updated_at=now)
            self._records.save(delivery)
            return before, delivery

    def _get(self, invoice_id: str) -> Delivery:
        found = self._records.of_invoice(invoice_id)
        if found is None:
            raise UnknownInvoice(f"invoice {invoice_id!r} has no delivery: it is not issued, or email is not set up")
        return found

    def due(self, now: datetime) -> list[Delivery]:
        return self._records.due(now)

    def send(self, due: Delivery, ledger: Ledger, catalog: Catalog) -> Delivery:
        """One attempt; the outcome is stored and returned, any failure becomes a retry.

        The delivery is read again first: since the due list was read it may have been sent,
        or rescheduled by a retry request, and the attempt counts from what is stored now."""
        with self._attempt:
            now = datetime.now(UTC)
            delivery = self._get(due.invoice_id)
            if (
                delivery.status not in (DeliveryStatus.PENDING, DeliveryStatus.RETRYING)
                or delivery.next_attempt_at > now
            ):
                return delivery
            return self._attempt_once(delivery, ledger, catalog, now)

    def _attempt_once(self, delivery: Delivery, ledger: Ledger, catalog: Catalog, now: datetime) -> Delivery:
        try:
            record = ledger.get(EVERYTHING, delivery.invoice_id)
            view = InvoiceView.of(record, catalog, self._pay_link(record))
            pdf = pdf_for_buyer(view)
            self._smtp_send(invoice_message(view, self._smtp.sender, delivery.recipient, pdf))
        except Exception as error:  # recorded on the delivery and retried: visible, never lost
            outcome = delivery.failed(f"{type(error).__name__}: {error}", now)
            metrics.DELIVERIES.labels(outcome="retry").inc()
            log.warning("emailing %s failed (attempt %d): %s", delivery.invoice_id, outcome.attempts, error)
        else:
            outcome = replace(delivery, status=DeliveryStatus.SENT, attempts=delivery.attempts + 1, updated_at=now)
            metrics.DELIVERIES.labels(outcome="sent").inc()
        self._records.save(outcome)
        return outcome

    def _smtp_send(self, message: EmailMessage) -> None:
        settings = self._smtp
        if settings.host is None:
            raise ConnectionError("METERLINE_SMTP_HOST is not set")
        with smtplib.SMTP(settings.host, settings.port, timeout=30) as smtp:
            if settings.starttls:
                smtp.starttls()
            if settings.user and settings.password:
                smtp.login(settings.user, settings.password)
            smtp.send_message(message)


async def deliver_when_due(
    deliveries: Deliveries, ledger: Ledger, current_catalog: Callable[[], Catalog], check_every_s: float
) -> None:
    """Send what is due, forever. A check that fails (ClickHouse unavailable, say) is logged,
    counted and done again at the next interval: it must not stop every later email."""
    while True:
        try:
            for delivery in await run_in_threadpool(deliveries.due, datetime.now(UTC)):
                await run_in_threadpool(deliveries.send, delivery, ledger, current_catalog())
        except Exception:
            metrics.DELIVERIES.labels(outcome="check_failed").inc()
            log.exception("checking for due invoice emails failed; trying again in %.1f s", check_every_s)
        await asyncio.sleep(check_every_s)
