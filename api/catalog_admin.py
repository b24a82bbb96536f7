"""The catalog's one writer: a change is checked against the whole catalog, stored, then published.

At the first start the store is seeded from the YAML file (``METERLINE_CATALOG``); from then on
the stored entries are the catalog and the file is not read again. Every start republishes the
current entries to the compacted topic, so a broker that lost its data (the embedded one keeps
it in memory) gets the catalog back.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from billing.adapters.catalog_file import load_catalog
from billing.adapters.kafka_catalog import CatalogNotPublished, CatalogPublisher
from billing.backdating import earliest_effect
from billing.catalog import Catalog
from billing.catalog_entries import Entry, EntryKind, assemble, entries_of, parse_entry, revision
from billing.periods import Period
from billing.scope import Scope
from meterline.exceptions import CurrencyInUse, Forbidden, InvalidCatalog, PeriodIssued, UnknownEntry
from storage.catalog_store import CatalogStore

log = logging.getLogger(__name__)
RETRY_TIMEOUT_S = 10.0
"""How long a publication retried on the timer waits for the broker: an attempt begun while the
broker was away gives up soon after it is back (the producer is made anew), rather than holding
the retry 30 s; the timer tries again 5 s later."""
CHANGE_PUBLISH_S = 5.0
"""How long a change waits for the broker before the caller is told it is stored, not yet sent."""


class CatalogAdmin:
    def __init__(
        self,
        store: CatalogStore,
        publisher: CatalogPublisher,
        seed: Path,
        latest_issued: Callable[[], Period | None] = lambda: None,
        currencies_held: Callable[[set[str]], dict[str, set[str]]] = lambda parties: {},
    ) -> None:
        """``latest_issued`` tells the latest month with issued invoices: a change may not
        reach into it (``billing.backdating``). ``currencies_held`` tells the currencies of each
        party's invoices, credit, payments and usage: a party made again under its id keeps theirs."""
        self._store = store
        self._publisher = publisher
        self._latest_issued = latest_issued
        self._currencies_held = currencies_held
        self._lock = threading.Lock()
        entries = store.current() or store.append(entries_of(load_catalog(seed)), datetime.now(UTC))
        self._entries = {entry.key: entry for entry in entries}
        self.catalog: Catalog = assemble(entries)
        self._unpublished = True
        self.publish_pending()

    def entry(self, scope: Scope, kind: EntryKind, entry_id: str) -> Entry:
        entry = self._entries.get(Entry(kind, entry_id, None).key)
        if entry is None or entry.document is None or not scope.sees_entry(kind, entry.document):
            raise UnknownEntry(f"no {kind.value} {entry_id!r} in the catalog")
        return entry

    @property
    def revision(self) -> int:
        """The catalog's revision (``billing.catalog_entries.revision``): usage accepted after a
        change carries it, so that no worker rates it before it has the change."""
        return revision(self._entries.values())

    def holds(self, kind: EntryKind, entry_id: str) -> bool:
        """Whether the catalog has this entry now (whoever may see it)."""
        entry = self._entries.get(Entry(kind, entry_id, None).key)
        return entry is not None and entry.document is not None

    def entries(self, scope: Scope, kind: EntryKind | None = None) -> list[Entry]:
        """The live entries the scope sees, of one kind or all."""
        return [
            e
            for e in self._entries.values()
            if (kind is None or e.kind is kind) and e.document is not None and scope.sees_entry(e.kind, e.document)
        ]

    def put(self, scope: Scope, kind: EntryKind, entry_id: str, document: dict[str, Any]) -> tuple[Entry | None, Entry]:
        """Create or replace an entry (a new version); refused if the catalog would not hold together.

        Returns the entry it replaced (None if new) and the new one. A tenant writes only what is
        its own before and after: a partner cannot take another partner's customer, nor give
        one of its own away."""
        change = parse_entry(kind, entry_id, document)
        before = self._entries.get(change.key)
        if before is not None and before.document is not None:
            self.entry(scope, kind, entry_id)
            _check_writable(scope, kind, before.document)
        elif not scope.everything and not _own_price_list(scope, kind, entry_id):
            # a tenant names only what it sees: an id that is free and one another tenant holds
            # must answer alike, and usage reported for an id nobody holds yet stays the
            # provider's until the provider assigns it (tenants create with ``create``)
            raise UnknownEntry(f"no {kind.value} {entry_id!r} in the catalog")
        _check_writable(scope, kind, change.document or {})
        return (before if before and before.document is not None else None), self._apply(change)

    def create(self, scope: Scope, kind: EntryKind, document: dict[str, Any]) -> Entry:
        """A new customer, subscription or one-time charge under an id made here: unguessable, so
        that it names nothing before (another tenant's entry, usage reported for an unknown id)."""
        if kind not in CREATED:
            raise InvalidCatalog(f"a {kind.value} is not created with a new id: PUT it under its own")
        if "id" in document:
            raise InvalidCatalog("the id of a new entry is made by meterline: leave 'id' out")
        entry_id = f"{CREATED[kind]}-{secrets.token_hex(8)}"
        change = parse_entry(kind, entry_id, {**document, "id": entry_id})
        _check_names_seen(scope, kind, change.document or {})
        _check_writable(scope, kind, change.document or {})
        return self._apply(change)

    def delete(self, scope: Scope, kind: EntryKind, entry_id: str) -> tuple[Entry, Entry]:
        before = self.entry(scope, kind, entry_id)
        _check_writable(scope, kind, before.document or {})
        return before, self._apply(Entry(kind, entry_id, None))

    def publish_pending(self) -> bool:
        """Publish the whole catalog again if a publication failed (the broker was away); True
        once the topic holds every entry. Called at start and then on a timer: compaction keeps
        each entry's latest version, so publishing it twice changes nothing."""
        with self._lock:
            if not self._unpublished:
                return True
            try:
                self._publisher.publish(list(self._entries.values()), timeout_s=RETRY_TIMEOUT_S)
            except CatalogNotPublished as error:
                log.warning("the catalog topic does not take the catalog yet (%s); trying again", error)
                return False
            self._unpublished = False
            return True

    def _apply(self, change: Entry) -> Entry:
        """Store the change (the store is the catalog), then publish it to the workers. A broker
        that does not take it leaves it stored and in force here, published again when it is
        back, and the caller is told (503): rating follows once the workers have it."""
        with self._lock:
            before = self._entries.get(change.key)
            self._check_not_backdated(change, before.document if before else None)
            catalog = assemble({**self._entries, change.key: change}.values())
            self._check_currencies_kept(catalog)
            (stored,) = self._store.append([change], datetime.now(UTC))
            self._entries[stored.key] = stored
            self.catalog = catalog
            try:
                self._publisher.publish([stored], timeout_s=CHANGE_PUBLISH_S)
            except CatalogNotPublished as error:
                self._unpublished = True
                raise CatalogNotPublished(
                    f"{stored.kind.value} {stored.id} version {stored.version} is stored and in force for the API, "
                    f"but the broker did not take it ({error}); it is sent to the pipeline when the broker is back"
                ) from error
            return stored

    def _check_currencies_kept(self, after: Catalog) -> None:
        """A party's currency is what its records are in, and records are never converted: the
        currency of a party in the catalog (its own, or a partner's customer's through its
        partner, or the catalog's) never changes, as usage, grants and payments in flight may
        carry it whatever a check of the stored records finds. A party new to the catalog (or
        deleted and made again under its id) takes the currency of its records, if it has any.
        A mistyped currency is mended by deleting the party before it holds anything."""
        before = {party.id for party in [*self.catalog.partners, *self.catalog.customers]}
        now_in = {party.id: after.currency_of(party.id) for party in [*after.partners, *after.customers]}
        changed = sorted(party for party in now_in.keys() & before if now_in[party] != self.catalog.currency_of(party))
        if changed:
            party = changed[0]
            raise CurrencyInUse(
                f"{party} is billed in {self.catalog.currency_of(party)}: a party's currency never changes, as its "
                f"records are never converted; bill {now_in[party]} under a new customer"
            )
        held = self._currencies_held(now_in.keys() - before)
        refused = sorted(party for party, currencies in held.items() if currencies != {now_in[party]})
        if refused:
            party = refused[0]
            raise CurrencyInUse(
                f"{party} holds records (invoices, credit, payments or usage) in {', '.join(sorted(held[party]))}: "
                f"made again under its id, it is billed in that currency, not {now_in[party]}"
            )

    def _check_not_backdated(self, change: Entry, before: dict[str, Any] | None) -> None:
        effect = earliest_effect(change.kind, before, change.document)
        if effect is None:
            return
        issued = self._latest_issued()
        if issued is not None and effect < issued.end:
            raise PeriodIssued(
                f"this change to {change.kind.value} {change.id} bills differently from "
                f"{effect:%Y-%m-%d %H:%M} UTC, but invoices up to {issued.name} are issued and never edited: "
                f"date it from {issued.end:%Y-%m-%d} or later"
            )


CREATED = {EntryKind.CUSTOMER: "c", EntryKind.SUBSCRIPTION: "sub", EntryKind.ONE_TIME_CHARGE: "otc"}
"""What a new id is made for, and its prefix."""


def _own_price_list(scope: Scope, kind: EntryKind, entry_id: str) -> bool:
    """A partner's price lists are keyed by the partner itself (and a currency): it may start one."""
    return kind is EntryKind.PRICE_LIST and any(
        entry_id == seller or re.fullmatch(re.escape(seller) + r"\.[A-Z]{3}", entry_id) for seller in scope.sellers
    )


def _check_names_seen(scope: Scope, kind: EntryKind, document: dict[str, Any]) -> None:
    """A new entry of a tenant names only parties it sees: any other is as if it did not exist."""
    if scope.everything:
        return
    if kind is EntryKind.CUSTOMER and document.get("partner_id") is None:
        raise InvalidCatalog("a customer made with a partner's key names that partner as its partner_id")
    if kind is EntryKind.CUSTOMER and document.get("partner_id") not in scope.sellers:
        raise UnknownEntry(f"no partner {document.get('partner_id')!r} in the catalog")
    if kind in (EntryKind.SUBSCRIPTION, EntryKind.ONE_TIME_CHARGE):
        customer_id = str(document.get("customer_id"))
        if not scope.sees_customer(customer_id):
            raise UnknownEntry(f"no customer {customer_id!r} in the catalog")


def _check_writable(scope: Scope, kind: EntryKind, document: dict[str, Any]) -> None:
    if not scope.may_write_entry(kind, document):
        raise Forbidden(f"this key may not write this {kind.value}")
