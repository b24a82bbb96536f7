"""Portal sessions: who signed in, in a cookie the API signs, and the CSRF secret of its forms.

``mls_<claims>.<signature>``: the claims are JSON in URL-safe base64, signed with HMAC-SHA256
under a key derived from the API's token secret (so a read token is never a session, nor a
session a token). A session names the API key it signed in with by its public id, or carries
the claims of the read token (never the token itself: a cookie is no credential for the API).
Each request checks again that the key is valid, or the token unrevoked. A session lasts
``LIFETIME`` at most, never past its token's expiry, and ends at sign-out: its id is stored as
signed out until it would have expired (a copy of the cookie is refused too).

CSRF: each session holds a random secret that its pages put in every form; a form posted without
it is refused. Before a session exists, the sign-in form carries a proof made from a random
nonce in a short-lived cookie and the API's key: a page elsewhere can neither read the nonce nor,
if it managed to set the cookie, make the proof.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from api.access.principals import Role
from api.access.tokens import ReadToken

PREFIX = "mls_"
LIFETIME = timedelta(hours=8)
SESSION_COOKIE = "meterline_session"
SIGN_IN_COOKIE = "meterline_sign_in"
SIGN_IN_LIFETIME = timedelta(minutes=30)
_DERIVATION = b"meterline portal session v1"


@dataclass(frozen=True)
class Session:
    session_id: str
    key_id: str | None
    """The public id of the API key it signed in with; None for a read token."""
    token: ReadToken | None
    """The claims of the read token it signed in with; None for an API key."""
    expires_at: datetime
    csrf: str

    def valid_at(self, now: datetime) -> bool:
        return now < self.expires_at


def new_session(key_id: str | None, token: ReadToken | None, now: datetime) -> Session:
    ends = now + LIFETIME if token is None else min(now + LIFETIME, token.expires_at)
    return Session(secrets.token_urlsafe(16), key_id, token, ends.replace(microsecond=0), secrets.token_urlsafe(24))


def session_key(token_secret: bytes) -> bytes:
    """The sessions' own signing key, derived from the token secret."""
    return hmac.new(token_secret, _DERIVATION, hashlib.sha256).digest()


def sign(session: Session, key: bytes) -> str:
    token = session.token
    claims = {
        "s": session.session_id,
        "k": session.key_id,
        "t": None
        if token is None
        else {
            "id": token.token_id,
            "role": token.role.value,
            "party": token.party_id,
            "meters": list(token.meters) if token.meters is not None else None,
            "exp": int(token.expires_at.timestamp()),
        },
        "exp": int(session.expires_at.timestamp()),
        "c": session.csrf,
    }
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{PREFIX}{body}.{_b64(_mac(body.encode(), key))}"


def verify(presented: str, key: bytes, now: datetime) -> Session | None:
    """The session if its signature holds and it has not expired; None otherwise."""
    if not presented.startswith(PREFIX):
        return None
    body, _, signature = presented.removeprefix(PREFIX).partition(".")
    if not hmac.compare_digest(signature.encode(), _b64(_mac(body.encode(), key)).encode()):
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        session = Session(
            session_id=str(claims["s"]),
            key_id=None if claims["k"] is None else str(claims["k"]),
            token=None if claims["t"] is None else _token_of(claims["t"]),
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
            csrf=str(claims["c"]),
        )
    except (ValueError, KeyError, TypeError):
        return None
    if (session.key_id is None) == (session.token is None):
        return None
    return session if session.valid_at(now) else None


def _token_of(claims: dict[str, object]) -> ReadToken:
    meters = claims["meters"]
    return ReadToken(
        token_id=str(claims["id"]),
        role=Role(str(claims["role"])),
        party_id=str(claims["party"]),
        meters=tuple(str(meter) for meter in meters) if isinstance(meters, list) else None,
        expires_at=datetime.fromtimestamp(int(str(claims["exp"])), UTC),
    )


def sign_in_proof(nonce: str, key: bytes) -> str:
    """What the sign-in form carries for the nonce in its cookie."""
    return _b64(_mac(b"sign-in:" + nonce.encode(), key))


def form_matches(presented: str | None, expected: str) -> bool:
    """A form's CSRF field is the secret its session holds (or its sign-in proof)."""
    return bool(presented) and bool(expected) and hmac.compare_digest(str(presented).encode(), expected.encode())


def _mac(body: bytes, key: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
