"""Short-lived signed read tokens for a customer or partner: a portal, an embedded chart, a link.

``mlt_<claims>.<signature>``: the claims are JSON in URL-safe base64, signed with HMAC-SHA256
under the API's token secret, so checking one reads no storage. A token reads usage and
invoices only, optionally only some meters' usage (then no invoices), until it expires or is
revoked by id (a short list of revoked ids, kept until they would have expired anyway).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from api.access.principals import TOKEN_PERMISSIONS, Permission, Principal, Role

PREFIX = "mlt_"
LONGEST_LIFETIME = timedelta(days=31)


@dataclass(frozen=True)
class ReadToken:
    token_id: str
    role: Role
    party_id: str
    meters: tuple[str, ...] | None
    expires_at: datetime

    def valid_at(self, now: datetime) -> bool:
        return now < self.expires_at

    def principal(self) -> Principal:
        permissions = frozenset({Permission.READ_USAGE}) if self.meters is not None else TOKEN_PERMISSIONS
        return Principal(
            f"token:{self.token_id}", self.role, self.party_id, meters=self.meters, permissions=permissions
        )


def sign(token: ReadToken, secret: bytes) -> str:
    claims = {
        "id": token.token_id,
        "role": token.role.value,
        "party": token.party_id,
        "meters": list(token.meters) if token.meters is not None else None,
        "exp": int(token.expires_at.timestamp()),
    }
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{PREFIX}{body}.{_b64(_mac(body, secret))}"


def verify(presented: str, secret: bytes, now: datetime) -> ReadToken | None:
    """The token's claims if its signature holds and it has not expired; None otherwise."""
    body, _, signature = presented.removeprefix(PREFIX).partition(".")
    # the signature as sign() writes it, to the character: base64 decoding forgives padding and
    # stray characters, which would make one token many
    if not hmac.compare_digest(signature.encode(), _b64(_mac(body, secret)).encode()):
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(_padded(body)))
        token = ReadToken(
            token_id=str(claims["id"]),
            role=Role(claims["role"]),
            party_id=str(claims["party"]),
            meters=tuple(claims["meters"]) if claims["meters"] is not None else None,
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
        )
    except (ValueError, KeyError, TypeError):
        return None
    return token if token.valid_at(now) and token.role.names_a_party else None


@dataclass(frozen=True)
class IssuedToken:
    """A read token as kept for listing and revoking it: never the token itself."""

    token: ReadToken
    issued_by: str
    issued_at: datetime
    revoked_at: datetime | None = None


def new_token_id() -> str:
    return secrets.token_hex(8)


def _mac(body: str, secret: bytes) -> bytes:
    return hmac.new(secret, body.encode(), hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _padded(text: str) -> bytes:
    return (text + "=" * (-len(text) % 4)).encode()
