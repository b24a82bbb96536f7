"""The catalog as separate entries (one per customer, price list, subscription...), and back.

Entries are what is stored (one versioned row each) and published (one compacted-topic message
each, keyed ``kind/id``): changing a customer's price list writes one entry, not the catalog.
Assembling validates the whole again, so an entry that breaks a reference is refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ValidationError

from billing.catalog import (
    Catalog,
    Customer,
    Issuer,
    OneTimeCharge,
    Partner,
    PriceList,
    Product,
    Subscription,
    describe,
    price_list_id,
)
from billing.money import TaxRate
from meterline.exceptions import InvalidCatalog

SETTINGS_ID = "catalog"
MAX_ENTRY_BYTES = 256 * 1024
"""An entry is one message on the catalog topic, and every worker holds them all: a price list of
some two thousand plans fits; a 2 MB customer name does not (the broker refused its message, and
the API, which publishes every entry at start, could not start again)."""


class CatalogSettings(BaseModel):
    currency: str


class EntryKind(StrEnum):
    SETTINGS = "settings"
    PROVIDER = "provider"
    PARTNER = "partner"
    CUSTOMER = "customer"
    PRODUCT = "product"
    PRICE_LIST = "price_list"
    TAX_RATE = "tax_rate"
    SUBSCRIPTION = "subscription"
    ONE_TIME_CHARGE = "one_time_charge"

    @property
    def model(self) -> type[BaseModel]:
        return _MODELS[self]

    @property
    def section(self) -> str:
        """Its name in the catalog document and in the API's paths: plural for lists."""
        return _LISTS.get(self, self.value)

    @classmethod
    def of_section(cls, section: str) -> EntryKind:
        return next(kind for kind in cls if kind.section == section)

    def id_of(self, document: dict[str, Any]) -> str:
        """The entry's key inside its kind: most carry an ``id``; a price list is its seller's (and
        its currency's, ``north.CHF``, when it names one)."""
        if self is EntryKind.SETTINGS:
            return SETTINGS_ID
        if self is EntryKind.PRICE_LIST:
            return price_list_id(str(document["seller_id"]), document.get("currency"))
        field = {EntryKind.TAX_RATE: "jurisdiction"}.get(self, "id")
        return str(document[field])


_MODELS: dict[EntryKind, type[BaseModel]] = {
    EntryKind.SETTINGS: CatalogSettings,
    EntryKind.PROVIDER: Issuer,
    EntryKind.PARTNER: Partner,
    EntryKind.CUSTOMER: Customer,
    EntryKind.PRODUCT: Product,
    EntryKind.PRICE_LIST: PriceList,
    EntryKind.TAX_RATE: TaxRate,
    EntryKind.SUBSCRIPTION: Subscription,
    EntryKind.ONE_TIME_CHARGE: OneTimeCharge,
}
_LISTS = {
    EntryKind.PARTNER: "partners",
    EntryKind.CUSTOMER: "customers",
    EntryKind.PRODUCT: "products",
    EntryKind.PRICE_LIST: "price_lists",
    EntryKind.TAX_RATE: "tax_rates",
    EntryKind.SUBSCRIPTION: "subscriptions",
    EntryKind.ONE_TIME_CHARGE: "one_time_charges",
}


@dataclass(frozen=True)
class Entry:
    kind: EntryKind
    id: str
    document: dict[str, Any] | None
    """None marks a deletion (kept in history, absent from the catalog)."""
    version: int = 0

    @property
    def key(self) -> str:
        return f"{self.kind.value}/{self.id}"


def entries_of(catalog: Catalog) -> list[Entry]:
    """Split a catalog into its entries, in an order where references come first."""
    entries = [
        Entry(EntryKind.SETTINGS, SETTINGS_ID, {"currency": catalog.currency}),
        Entry(EntryKind.PROVIDER, catalog.provider.id, catalog.provider.model_dump(mode="json")),
    ]
    for kind, field in _LISTS.items():
        for item in getattr(catalog, field):
            document = item.model_dump(mode="json")
            entries.append(Entry(kind, kind.id_of(document), document))
    return entries


def parse_entry(kind: EntryKind, entry_id: str, document: dict[str, Any]) -> Entry:
    """Validate one entry on its own; its key must match the id inside it, and it must fit in a
    message of the catalog topic (``MAX_ENTRY_BYTES``)."""
    try:
        model = kind.model.model_validate(document)
    except ValidationError as error:
        raise InvalidCatalog(f"{kind.value} {entry_id}: {describe(error)}") from error
    checked = model.model_dump(mode="json")
    size = len(json.dumps(checked))
    if size > MAX_ENTRY_BYTES:
        raise InvalidCatalog(
            f"{kind.value} {entry_id}: {size} bytes of JSON, more than an entry holds ({MAX_ENTRY_BYTES})"
        )
    if kind.id_of(checked) != entry_id:
        raise InvalidCatalog(f"{kind.value} {entry_id}: the document names {kind.id_of(checked)!r} instead")
    return Entry(kind, entry_id, checked)


def revision(entries: Iterable[Entry]) -> int:
    """How many changes made the catalog these entries (deletions included) describe: every
    change adds a version to one entry, so the sum of their versions grows by one with each. The
    API and the workers count it alike, and a worker that has a lower one misses a change."""
    return sum(entry.version for entry in entries)


def assemble(entries: Iterable[Entry]) -> Catalog:
    """The catalog the live entries describe; deleted entries are left out."""
    document: dict[str, Any] = {field: [] for field in _LISTS.values()}
    for entry in entries:
        if entry.document is None:
            continue
        if entry.kind is EntryKind.SETTINGS:
            document.update(entry.document)
        elif entry.kind is EntryKind.PROVIDER:
            document["provider"] = entry.document
        else:
            document[_LISTS[entry.kind]].append(entry.document)
    try:
        return Catalog.model_validate(document)
    except ValidationError as error:
        raise InvalidCatalog(describe(error)) from error
