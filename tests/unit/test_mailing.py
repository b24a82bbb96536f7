"""Who is emailed which invoice document, and how soon a failed send is tried again."""

from __future__ import annotations

from datetime import timedelta

import pytest

from billing.catalog import Catalog
from billing.invoices import InvoiceStatus
from billing.mailing import MAX_DELAY, documents_to_email, recipient_of, retry_delay
from billing.records import credit_note_id
from tests.factories import catalog_document

DRAFT, ISSUED, PAID, VOID = InvoiceStatus.DRAFT, InvoiceStatus.ISSUED, InvoiceStatus.PAID, InvoiceStatus.VOID


@pytest.mark.parametrize(
    ("before", "after", "sent"),
    [
        (DRAFT, ISSUED, ["inv-1"]),
        (ISSUED, VOID, [credit_note_id("inv-1")]),
        (DRAFT, VOID, []),  # no buyer saw the draft: nothing to cancel in its books
        (ISSUED, PAID, []),
        (ISSUED, ISSUED, []),  # issuing twice changes nothing, and sends nothing again
    ],
)
def test_issuing_sends_the_invoice_and_cancelling_an_issued_one_its_credit_note(before, after, sent):
    assert documents_to_email("inv-1", before, after) == sent


def test_a_failed_send_waits_30_s_then_twice_as_long_each_time_never_more_than_an_hour():
    assert [retry_delay(n).total_seconds() for n in range(8)] == [30, 60, 120, 240, 480, 960, 1920, 3600]
    assert retry_delay(10_000) == MAX_DELAY == timedelta(hours=1), "no overflow however many failures"


def test_a_resold_customer_without_an_address_is_reached_through_its_partner():
    document = catalog_document()
    document["partners"][0]["email"] = "billing@north.example"
    document["customers"][0]["email"] = "accounts@direct.example"
    catalog = Catalog.model_validate(document)
    resold = next(c for c in catalog.customers if c.partner_id)
    direct = next(c for c in catalog.customers if not c.partner_id)
    assert recipient_of(catalog, direct.id) == "accounts@direct.example"
    assert recipient_of(catalog, resold.id) == "billing@north.example"
    assert recipient_of(catalog, "north") == "billing@north.example"
