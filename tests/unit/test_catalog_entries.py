"""The catalog splits into stored entries and assembles back, refusing entries that break it."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from api.catalog_admin import _own_price_list
from billing.adapters.catalog_file import load_catalog
from billing.adapters.kafka_catalog import decode_entry, encode_entry
from billing.catalog import Party
from billing.catalog_entries import Entry, EntryKind, assemble, entries_of, parse_entry
from billing.scope import Scope
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


def test_a_price_list_in_a_currency_of_its_own_is_keyed_by_its_seller_and_currency():
    assert EntryKind.PRICE_LIST.id_of({"seller_id": "north", "plans": []}) == "north"
    assert EntryKind.PRICE_LIST.id_of({"seller_id": "north", "currency": "CHF"}) == "north.CHF"
    north = Scope(customers=frozenset({"resold"}), parties=frozenset({"resold", "north"}), sellers=frozenset({"north"}))
    owned = {entry: _own_price_list(north, EntryKind.PRICE_LIST, entry) for entry in OWN_OR_NOT}
    assert owned == {"north": True, "north.CHF": True, "north.chf": False, "south.CHF": False, "north.CHF.x": False}
    assert not _own_price_list(north, EntryKind.CUSTOMER, "north")


OWN_OR_NOT = ("north", "north.CHF", "north.chf", "south.CHF", "north.CHF.x")
