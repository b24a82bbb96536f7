"""API keys: ``mlk_<id>_<secret>``, shown once at creation and stored as a SHA-256 of the secret.

The id is public (lists, the audit log, a key's prefix in a support ticket); the secret is 256
random bits, so a plain SHA-256 is as safe to store as a slow password hash and costs a
microsecond per request. A principal holds several keys at once, each with an optional expiry,
so that keys rotate without downtime: create the new one, deploy it, revoke the old one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, replace
from datetime import datetime

from api.access.principals import Principal, Role
from billing.scope import Scope

PREFIX = "mlk"


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    secret_sha256: str
    name: str
    role: Role
    party_id: str
    """The partner or customer of a partner or customer key; empty otherwise."""
    sources: tuple[str, ...]
    customers: tuple[str, ...]
    created_by: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def prefix(self) -> str:
        return f"{PREFIX}_{self.key_id}"

    def valid_at(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def matches(self, secret: str) -> bool:
        return hmac.compare_digest(self.secret_sha256, digest(secret))

    def principal(self) -> Principal:
        return Principal(self.key_id, self.role, self.party_id or None, self.sources, self.customers)

    def revoked(self, now: datetime) -> ApiKey:
        return self if self.revoked_at is not None else replace(self, revoked_at=now)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key_material() -> tuple[str, str, str]:
    """A fresh key id, its secret, and the full key to hand out once."""
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    return key_id, secret, f"{PREFIX}_{key_id}_{secret}"


def split_key(presented: str) -> tuple[str, str] | None:
    """The id and secret of a presented key, or None if it is not shaped like one."""
    prefix, _, rest = presented.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != PREFIX or len(key_id) != 12 or not secret:
        return None
    return key_id, secret


def may_manage(manager: Principal, scope: Scope, role: Role, party_id: str) -> bool:
    """Whoever may manage a principal may manage its keys: the provider's admin every key, a
    partner its own and its customers', a customer its own. Never a role above one's own."""
    if manager.role is Role.ADMIN:
        return True
    if manager.role is Role.PARTNER:
        return (role is Role.PARTNER and party_id == manager.party_id) or (
            role is Role.CUSTOMER and scope.sees_customer(party_id)
        )
    if manager.role is Role.CUSTOMER:
        return role is Role.CUSTOMER and party_id == manager.party_id
    return False
