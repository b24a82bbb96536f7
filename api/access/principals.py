"""Principals, their roles, and what each role may do.

The provider's admin does everything; its read-only role reads everything; a partner reads and
manages its own customers and the invoices it issues; a customer reads only itself; an ingest
key only pushes usage, and only for the sources (and customers) it is bound to.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from billing.catalog import Catalog
from billing.scope import EVERYTHING, NOTHING, Scope, customer_scope, partner_scope


class Role(StrEnum):
    ADMIN = "admin"
    READER = "reader"
    PARTNER = "partner"
    CUSTOMER = "customer"
    INGEST = "ingest"

    @property
    def names_a_party(self) -> bool:
        return self in (Role.PARTNER, Role.CUSTOMER)


class Permission(StrEnum):
    PUSH_EVENTS = "push_events"
    READ_USAGE = "read_usage"
    READ_INVOICES = "read_invoices"
    CHANGE_INVOICES = "change_invoices"
    """Issue, pay, void one invoice; send its email again."""
    CLOSE_PERIODS = "close_periods"
    """Close or issue a whole period: every tenant's invoices at once."""
    READ_CATALOG = "read_catalog"
    WRITE_CATALOG = "write_catalog"
    READ_OPERATIONS = "read_operations"
    """Completeness and dead letters: every producer's messages, every tenant's refused events."""
    MANAGE_KEYS = "manage_keys"
    ISSUE_TOKENS = "issue_tokens"
    READ_AUDIT = "read_audit"
    READ_CREDIT = "read_credit"
    """A holder's prepaid credit: grants, ledger, balance."""
    MANAGE_CREDIT = "manage_credit"
    """Grant, top up and void credit (a partner: its customers')."""
    PAY = "pay"
    """Pay an invoice it receives, or buy credit, by card (through the gateway's page)."""
    MANAGE_PAYMENTS = "manage_payments"
    """Refund what was paid to it, and record its buyers' saved cards (a partner: its customers')."""
    MANAGE_ALERTS = "manage_alerts"
    """Credit alert rules and webhook endpoints (a partner: for its customers and itself; a
    customer the catalog lets: for itself)."""


_READS = frozenset({Permission.READ_USAGE, Permission.READ_INVOICES, Permission.READ_CATALOG, Permission.READ_CREDIT})
PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.READER: _READS | {Permission.READ_OPERATIONS, Permission.READ_AUDIT},
    Role.PARTNER: _READS
    | {
        Permission.CHANGE_INVOICES,
        Permission.WRITE_CATALOG,
        Permission.MANAGE_KEYS,
        Permission.ISSUE_TOKENS,
        Permission.MANAGE_CREDIT,
        Permission.MANAGE_ALERTS,
        Permission.PAY,
        Permission.MANAGE_PAYMENTS,
    },
    # managing alerts: only a customer the catalog lets (``manages_alerts``), checked by the routes
    Role.CUSTOMER: _READS | {Permission.MANAGE_KEYS, Permission.ISSUE_TOKENS, Permission.MANAGE_ALERTS, Permission.PAY},
    Role.INGEST: frozenset({Permission.PUSH_EVENTS}),
}
TOKEN_PERMISSIONS = frozenset({Permission.READ_USAGE, Permission.READ_INVOICES, Permission.READ_CREDIT})
"""What a signed read token allows, at most (one limited to some meters: usage only): what a
portal session shows its customer."""


@dataclass(frozen=True)
class Principal:
    """Who a request is from, as its key or token says."""

    key_id: str
    """The key's public id (or ``token:<id>``), what the audit log records."""
    role: Role
    party_id: str | None = None
    """The partner or customer a partner or customer key belongs to."""
    sources: tuple[str, ...] = ()
    """For an ingest key: the sources it reports for; ``prefix*`` covers every source so named."""
    customers: tuple[str, ...] = ()
    """For an ingest key: the only customers it may report for (empty: any)."""
    meters: tuple[str, ...] | None = None
    """For a read token: the only meters it shows."""
    permissions: frozenset[Permission] | None = None
    """Narrower than the role's, for a read token."""

    @property
    def credential(self) -> str:
        """What it presented, as an error message names it: "an ingest key", "a read token"."""
        if self.key_id.startswith("token:"):
            return "a read token"
        article = "an" if self.role.value[0] in "aeiou" else "a"
        return f"{article} {self.role.value} key"

    def may(self, permission: Permission) -> bool:
        allowed = PERMISSIONS[self.role] if self.permissions is None else self.permissions
        return permission in allowed

    def scope(self, catalog: Catalog) -> Scope:
        """The tenants it sees under the current catalog (a partner's customers change with it)."""
        if self.role in (Role.ADMIN, Role.READER):
            scope = EVERYTHING
        elif self.role is Role.PARTNER and self.party_id:
            scope = partner_scope(catalog, self.party_id)
        elif self.role is Role.CUSTOMER and self.party_id:
            scope = customer_scope(self.party_id)
        else:
            scope = NOTHING
        return scope.limited_to(self.meters)

    def reports_for(self, source: str, customer_id: str) -> bool:
        """An ingest key may push an event of this source and customer."""
        if self.role is Role.ADMIN:
            return True
        if self.role is not Role.INGEST:
            return False
        named = any(source == s or (s.endswith("*") and source.startswith(s[:-1])) for s in self.sources)
        return named and (not self.customers or customer_id in self.customers)
