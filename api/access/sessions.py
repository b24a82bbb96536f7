"""Portal sessions: who signed in, in a cookie the API signs, and the CSRF secret of its forms.

``mls_<claims>.<signature>``: the claims are JSON in URL-safe base64, signed with HMAC-SHA256
under a key derived from the API's token secret (so a read token is never a session, nor a
session a token). A session signed in with an API key names the key's public id only, and each
request checks again that the key is still valid (a revoked key ends its sessions within the key
store's refresh); one signed in with a read token carries the token, checked again each request
(expiry, revocation). A session lasts ``LIFETIME`` at most, and never past its token's expiry.

CSRF: each session holds a random secret that its pages put in every form; a form posted without
it is refused. Before a session exists, the sign-in form is tied the same way to a short-lived
cookie of its own (a page elsewhere cannot sign a browser in to another account).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

PREFIX = "mls_"
LIFETIME = timedelta(hours=8)
SESSION_COOKIE = "meterline_session"
SIGN_IN_COOKIE = "meterline_sign_in"
SIGN_IN_LIFETIME = timedelta(minutes=30)
_DERIVATION = b"meterline portal session v1"


@dataclass(frozen=True)
class Session:
    key_id: str | None
    """The public id of the API key it signed in with; None for a read token."""
    token: str | None
    """The read token it signed in with, as presented; None for an API key."""
    expires_at: datetime
    csrf: str

    def valid_at(self, now: datetime) -> bool:
        return now < self.expires_at


def new_session(key_id: str | None, token: str | None, now: datetime, token_expires_at: datetime | None) -> Session:
    ends = now + LIFETIME if token_expires_at is None else min(now + LIFETIME, token_expires_at)
    return Session(key_id, token, ends.replace(microsecond=0), secrets.token_urlsafe(24))


def session_key(token_secret: bytes) -> bytes:
    """The sessions' own signing key, derived from the token secret."""
    return hmac.new(token_secret, _DERIVATION, hashlib.sha256).digest()


def sign(session: Session, key: bytes) -> str:
    claims = {"k": session.key_id, "t": session.token, "exp": int(session.expires_at.timestamp()), "c": session.csrf}
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{PREFIX}{body}.{_b64(_mac(body, key))}"


def verify(presented: str, key: bytes, now: datetime) -> Session | None:
    """The session if its signature holds and it has not expired; None otherwise."""
    if not presented.startswith(PREFIX):
        return None
    body, _, signature = presented.removeprefix(PREFIX).partition(".")
    if not hmac.compare_digest(signature.encode(), _b64(_mac(body, key)).encode()):
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        session = Session(
            key_id=None if claims["k"] is None else str(claims["k"]),
            token=None if claims["t"] is None else str(claims["t"]),
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
            csrf=str(claims["c"]),
        )
    except (ValueError, KeyError, TypeError):
        return None
    if (session.key_id is None) == (session.token is None):
        return None
    return session if session.valid_at(now) else None


def form_matches(presented: str | None, expected: str) -> bool:
    """A form's CSRF field is the secret its session (or sign-in cookie) holds."""
    return bool(presented) and bool(expected) and hmac.compare_digest(str(presented).encode(), expected.encode())


def _mac(body: str, key: bytes) -> bytes:
    return hmac.new(key, body.encode(), hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
