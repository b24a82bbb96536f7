"""The catalog splits into stored entries and assembles back, refusing entries that break it."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from billing.adapters.catalog_file import load_catalog
from billing.adapters.kafka_catalog import decode_entry, encode_entry
from billing.catalog import Party
from billing.catalog_entries import Entry, EntryKind, assemble, entries_of, parse_entry
from meterline.exceptions import InvalidCatalog

DEMO = load_catalog(Path("billing/catalog.yaml"))


def test_the_catalog_survives_the_trip_through_entries_and_the_topic():
    entries = [decode_entry(encode_entry(entry)) for entry in entries_of(DEMO)]
    assert assemble(entries) == DEMO
    assert len({entry.key for entry in entries}) == len(entries)


def test_a_deleted_entry_leaves_the_catalog_but_a_referenced_one_cannot_go():
    entries = {entry.key: entry for entry in entries_of(DEMO)}
    entries["one_time_charge/otc-migration-00004"] = Entry(EntryKind.ONE_TIME_CHARGE, "otc-migration-00004", None)
    assert assemble(entries.values()).one_time_charges == []
    entries["customer/cust-00001"] = Entry(EntryKind.CUSTOMER, "cust-00001", None)
    with pytest.raises(InvalidCatalog, match="unknown customer cust-00001"):
        assemble(entries.values())


def test_an_entry_must_be_filed_under_its_own_id():
    assert parse_entry(EntryKind.TAX_RATE, "IT", {"jurisdiction": "IT", "rate_percent": "22"}).id == "IT"
    with pytest.raises(InvalidCatalog, match="names 'y'"):
        parse_entry(EntryKind.CUSTOMER, "x", {"id": "y", "name": "Y"})
    with pytest.raises(InvalidCatalog, match="rate_percent"):
        parse_entry(EntryKind.TAX_RATE, "IT", {"jurisdiction": "IT", "rate_percent": "-1"})


@pytest.mark.parametrize("email", ["x@y\r\nBcc: a@evil.example", "not an email", "a@@b.example", "a@-b.example"])
def test_an_invoice_email_is_one_plain_address(email):
    """A line break (a second header) or no address at all failed every send of the invoice."""
    with pytest.raises(ValidationError, match="email"):
        Party.model_validate({"id": "p", "name": "P", "email": email})
    assert Party.model_validate({"id": "p", "name": "P", "email": "ops@intranet"}).email == "ops@intranet"
