"""Which tenants' data a caller sees and may change: applied wherever data is read or written.

The provider sees everything. A partner sees itself and the customers it sells to, a customer
only itself; an invoice belongs to its buyer's tenant (a partner's own invoice from the provider
is the partner's, the invoices it issues to its customers are theirs and its). Readers take a
``Scope`` and filter by it, so that a route cannot forget to: what is outside it does not exist
for the caller (404, never 403, so that nothing confirms another tenant's ids).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from billing.catalog import Catalog
from billing.catalog_entries import EntryKind
from meterline.exceptions import Forbidden, UnknownCustomer

_PUBLIC_KINDS = frozenset({EntryKind.PRODUCT})
"""What every tenant may read of the catalog besides its own parties and items: the offering."""


@dataclass(frozen=True)
class Scope:
    customers: frozenset[str] | None = None
    """The customers whose usage and catalog items it sees; None: every one (the provider)."""
    parties: frozenset[str] | None = None
    """The buyers whose invoices it sees, and the parties of the catalog it sees: its customers
    and, for a partner, itself."""
    sellers: frozenset[str] = frozenset()
    """The issuers whose invoices it may change (issue, pay, void, deliver) and whose price list
    it may edit: a partner itself. Ignored when ``customers`` is None."""
    meters: frozenset[str] | None = None
    """The meters whose usage it sees (a read token for one chart); None: all."""

    @property
    def everything(self) -> bool:
        return self.customers is None

    def sees_customer(self, customer_id: str) -> bool:
        return self.customers is None or customer_id in self.customers

    def sees_party(self, party_id: str) -> bool:
        """A buyer whose invoices it sees, or a partner or customer it may hand keys and tokens for."""
        return self.parties is None or party_id in self.parties

    def sees_invoice(self, issuer_id: str, buyer_id: str, draft: bool) -> bool:
        """An invoice of one of its buyers; a draft only if it is its issuer's (a draft is the
        issuer's work in progress, which its buyer sees once issued)."""
        return self.everything or (self.sees_party(buyer_id) and (not draft or issuer_id in self.sellers))

    def may_change_invoice(self, issuer_id: str, buyer_id: str) -> bool:
        return self.everything or (issuer_id in self.sellers and self.sees_party(buyer_id))

    def check_may_change_invoice(self, invoice_id: str, issuer_id: str, buyer_id: str) -> None:
        """Raise ``Forbidden`` for an invoice the scope sees but did not issue (issue, pay,
        void, send again: each is its issuer's to do)."""
        if not self.may_change_invoice(issuer_id, buyer_id):
            raise Forbidden(f"invoice {invoice_id!r} is issued by {issuer_id}; only its issuer changes or sends it")

    def visible_customers(self, asked: Collection[str]) -> list[str]:
        return [customer for customer in asked if self.sees_customer(customer)]

    def sees_entry(self, kind: EntryKind, document: Mapping[str, Any]) -> bool:
        if self.everything or kind in _PUBLIC_KINDS:
            return True
        return self._owns_entry(kind, document, self.parties or frozenset())

    def may_write_entry(self, kind: EntryKind, document: Mapping[str, Any]) -> bool:
        """A partner edits its customers (kept its own), their subscriptions and the one-time
        charges it supplies, and its own price list; its partner entry, products, taxes, settings
        and the charges the provider supplies (which the provider bills it for) are the provider's."""
        if self.everything:
            return True
        if kind is EntryKind.PRICE_LIST:
            return document.get("seller_id") in self.sellers
        if kind is EntryKind.CUSTOMER:
            return document.get("partner_id") in self.sellers
        if kind is EntryKind.ONE_TIME_CHARGE and document.get("supplier", "seller") != "seller":
            return False  # the provider bills the partner for what it supplied: not the partner's to drop
        if kind in (EntryKind.SUBSCRIPTION, EntryKind.ONE_TIME_CHARGE):
            return bool(self.sellers) and self.sees_customer(str(document.get("customer_id")))
        return False

    def _owns_entry(self, kind: EntryKind, document: Mapping[str, Any], parties: frozenset[str]) -> bool:
        if kind in (EntryKind.PARTNER, EntryKind.CUSTOMER):
            return document.get("id") in parties
        if kind in (EntryKind.SUBSCRIPTION, EntryKind.ONE_TIME_CHARGE):
            return self.sees_customer(str(document.get("customer_id")))
        if kind is EntryKind.PRICE_LIST:
            return document.get("seller_id") in self.sellers
        return False

    def limited_to(self, meters: Collection[str] | None) -> Scope:
        """The same tenants, seeing only ``meters`` (if given) of what it saw."""
        if meters is None:
            return self
        kept = frozenset(meters) if self.meters is None else self.meters & frozenset(meters)
        return Scope(self.customers, self.parties, self.sellers, kept)

    def only_customer(self, customer_id: str) -> Scope:
        """What it sees of one of its customers alone (a portal page about that customer); a
        customer it does not see does not exist (``UnknownCustomer``)."""
        if not self.sees_customer(customer_id):
            raise UnknownCustomer(f"no customer {customer_id!r}")
        only = frozenset({customer_id})
        return Scope(only, only, self.sellers, self.meters)


EVERYTHING = Scope()
NOTHING = Scope(customers=frozenset(), parties=frozenset())


def partner_scope(catalog: Catalog, partner_id: str) -> Scope:
    customers = catalog.customers_of_partner.get(partner_id, frozenset())
    return Scope(customers=customers, parties=customers | {partner_id}, sellers=frozenset({partner_id}))


def customer_scope(customer_id: str) -> Scope:
    return Scope(customers=frozenset({customer_id}), parties=frozenset({customer_id}))
