"""Issued invoices reach the buyer by email through a real SMTP server, even after it was down."""

from __future__ import annotations

import email
from collections.abc import Iterator
from email.message import Message
from functools import partial
from pathlib import Path
from typing import Any

import facturx
import pytest
from aiosmtpd.controller import Controller

from meterline.brokers import Broker
from schemas.events import encode_batch
from tests.factories import catalog_document, vm_sample
from tests.integration.harness import System, free_port, system_with_catalog, wait_for
from tests.integration.test_invoicing import OCTOBER, rated_rows

pytestmark = pytest.mark.integration


class Mailbox:
    """An aiosmtpd handler that keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's hook name)
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
def billing(broker: Broker, tmp_path: Path, smtp_port: int) -> Iterator[System]:
    document = catalog_document()
    document["customers"][0]["email"] = "accounts@direct.example"
    document["partners"][0]["email"] = "billing@north.example"
    running = system_with_catalog(
        broker,
        tmp_path,
        document,
        METERLINE_SMTP_HOST="127.0.0.1",
        METERLINE_SMTP_PORT=str(smtp_port),
        METERLINE_DELIVERY_CHECK_INTERVAL_S="0.3",
    )
    yield running.start_all()
    running.stop_all()


def delivery(system: System, invoice_id: str) -> dict[str, Any]:
    response = system.http.get(f"/v1/invoices/{invoice_id}/delivery", timeout=30)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def first_failure(system: System, invoice_id: str) -> dict[str, Any] | None:
    status = delivery(system, invoice_id)
    return status if status["attempts"] else None


def test_an_invoice_waits_out_a_mail_server_outage_and_then_arrives(billing: System, smtp_port: int):
    events = [vm_sample("vm-1", customer_id="direct", at=OCTOBER), vm_sample("vm-2", customer_id="resold", at=OCTOBER)]
    assert billing.http.post("/v1/events", content=encode_batch(events), timeout=30).status_code == 202
    wait_for(lambda: rated_rows(billing, "direct") == 4 and rated_rows(billing, "resold") == 4, what="usage")
    billing.http.post("/v1/periods/2026-10/close", timeout=60).raise_for_status()
    for invoice_id in ("2026-10.acme.direct", "2026-10.north.resold"):
        billing.http.post(f"/v1/invoices/{invoice_id}/issue", timeout=60).raise_for_status()

    # both must have failed before the server starts: one sent on its first try would be sent
    # again by the /deliver below, and that second copy is what /deliver is for
    for invoice_id in ("2026-10.acme.direct", "2026-10.north.resold"):
        failed = wait_for(partial(first_failure, billing, invoice_id), what=f"{invoice_id} failing")
        assert failed["status"] == "retrying" and "refused" in failed["last_error"].lower()

    mailbox = Mailbox()
    server = Controller(mailbox, hostname="127.0.0.1", port=smtp_port)
    server.start()
    try:
        for invoice_id in ("2026-10.acme.direct", "2026-10.north.resold"):
            billing.http.post(f"/v1/invoices/{invoice_id}/deliver", timeout=30).raise_for_status()
        wait_for(lambda: len(mailbox.messages) >= 2, what="both emails")
    finally:
        server.stop()

    assert len(mailbox.messages) == 2, "each invoice is emailed once"

    assert delivery(billing, "2026-10.acme.direct")["status"] == "sent"
    by_recipient = {message["To"]: message for message in mailbox.messages}
    assert set(by_recipient) == {"accounts@direct.example", "billing@north.example"}
    direct = by_recipient["accounts@direct.example"]
    assert "ACME-000001" in direct["Subject"]
    (attachment,) = [part for part in direct.walk() if part.get_content_type() == "application/pdf"]
    _name, xml = facturx.get_xml_from_pdf(attachment.get_payload(decode=True), check_xsd=True)
    assert b"ACME-000001" in xml
