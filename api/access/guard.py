"""Every route declares who may call it: ``Requires(permission)`` or ``Public()``.

``Requires`` authenticates the bearer credential (an API key or a signed read token), applies
the key's rate limit, checks the role's permission and hands the route a ``Caller``: the
principal and the scope it sees under the current catalog, which every reader takes. No
credential or a bad one is 401, a role without the permission 403, and another tenant's object
404 (the readers' doing: they do not find it).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, cast

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.routing import BaseRoute

from api.access import sessions, tokens
from api.access.key_store import KeyStore
from api.access.keys import digest, split_key
from api.access.principals import Permission, Principal, Role
from api.access.rate_limits import TokenBuckets, retry_after_header
from api.services import services_of
from billing.catalog import Catalog
from billing.scope import Scope
from meterline.exceptions import Forbidden, RateLimited, Unauthenticated, UnknownCustomer, UnsupportedMediaType
from meterline.settings import Settings
from schemas import columnar

BOOTSTRAP_KEY_ID = "bootstrap"
DOCUMENTATION_PAGES = frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"})
"""The interactive documentation FastAPI serves: static pages, public, holding no data."""
MIN_TOKEN_SECRET_CHARS = 32
CHANGES_STATE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
bearer = HTTPBearer(
    auto_error=False,
    description="An API key (`mlk_…`) or a signed read token (`mlt_…`): `Authorization: Bearer <it>`",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


@dataclass(frozen=True)
class Caller:
    principal: Principal
    scope: Scope


class Authenticator:
    """Turns a presented credential into a principal; reads memory only (see ``KeyStore``)."""

    def __init__(self, settings: Settings, keys: KeyStore) -> None:
        self.keys = keys
        admin = settings.admin_key.get_secret_value() if settings.admin_key else None
        self._admin_digest = digest(admin) if admin else None
        self.token_secret = _token_secret(settings)
        self.session_key = sessions.session_key(self.token_secret)
        self._buckets = TokenBuckets(settings.rate_limit_per_s, settings.rate_limit_burst)
        self._ingest_buckets = TokenBuckets(settings.ingest_rate_limit_per_s, settings.ingest_rate_limit_burst)
        self._failures = TokenBuckets(settings.rate_limit_per_s, settings.rate_limit_burst)

    def principal(self, presented: str | None, now: datetime) -> Principal:
        if not presented:
            raise Unauthenticated("send an API key or a read token: Authorization: Bearer <it>")
        if self._admin_digest and hmac.compare_digest(digest(presented), self._admin_digest):
            return Principal(BOOTSTRAP_KEY_ID, Role.ADMIN)
        if presented.startswith(tokens.PREFIX):
            token = tokens.verify(presented, self.token_secret, now)
            if token is None or self.keys.token_revoked(token.token_id):
                raise Unauthenticated("the read token is invalid, expired or revoked")
            return token.principal()
        parts = split_key(presented)
        key = self.keys.key(parts[0]) if parts else None
        if parts is None or key is None or not key.matches(parts[1]) or not key.valid_at(now):
            raise Unauthenticated("the API key is unknown, expired or revoked")
        return key.principal()

    def session_principal(self, session: sessions.Session, now: datetime) -> Principal:
        """Who a portal session is, checked again now: not signed out, and its read token
        unexpired and unrevoked, or the API key it signed in with still valid."""
        if self.keys.session_ended(session.session_id):
            raise Unauthenticated("this session was signed out: sign in again")
        if session.token is not None:
            if not session.token.valid_at(now) or self.keys.token_revoked(session.token.token_id):
                raise Unauthenticated("the read token this session signed in with is expired or revoked")
            return session.token.principal()
        key = self.keys.key(session.key_id or "")
        if key is None or not key.valid_at(now):
            raise Unauthenticated("the API key this session signed in with is expired or revoked")
        return key.principal()

    def refuse_if_failing(self, address: str) -> None:
        """Refuse (429) any sign-in from an address that spent its failed-authentication budget,
        until it recovers: a guesser is not told at once that a guess was right."""
        wait_s = self._failures.wait_s(address)
        if wait_s:
            raise RateLimited(f"too many failed authentications from {address}", retry_after_header(wait_s))

    def throttle_failure(self, address: str) -> None:
        """A caller that keeps presenting bad credentials is slowed like a key over its rate (429),
        per address: guessing keys costs it the rate limit on top of the keys' 256-bit secrets."""
        wait_s = self._failures.take(address)
        if wait_s:
            raise RateLimited(f"too many failed authentications from {address}", retry_after_header(wait_s))

    def throttle(self, principal: Principal) -> None:
        buckets = self._ingest_buckets if principal.role is Role.INGEST else self._buckets
        wait_s = buckets.take(principal.key_id)
        if wait_s:
            raise RateLimited(f"key {principal.key_id} is over its rate", retry_after_header(wait_s))


class Policy:
    """Who may call a route: each route depends on exactly one (``route_policies`` checks)."""

    permission: Permission | None


class Requires(Policy):
    """A route's policy: the caller must hold ``permission``."""

    def __init__(self, permission: Permission) -> None:
        self.permission = self.required = permission

    async def __call__(self, request: Request, credentials: Credentials) -> Caller:
        authenticator: Authenticator = services_of(request).authenticator
        try:
            principal = authenticator.principal(credentials.credentials if credentials else None, datetime.now(UTC))
        except Unauthenticated:
            authenticator.throttle_failure(client_address(request))
            raise
        caller = admit(request, principal)
        _check_json_body(request)
        if not principal.may(self.required):
            raise Forbidden(f"{principal.credential} may not {self.required.value.replace('_', ' ')}")
        return caller


def admit(request: Request, principal: Principal) -> Caller:
    """An authenticated principal as a caller: its party still in the catalog, its scope under
    the current catalog, within its rate. Named on the request from here on (the audit log)."""
    authenticator: Authenticator = services_of(request).authenticator
    catalog: Catalog = services_of(request).catalog_admin.catalog
    if principal.party_id is not None and not _in_catalog(catalog, principal.party_id):
        # a deleted customer's keys and tokens go with it (its partner no longer sees them)
        raise Unauthenticated(f"this credential's party {principal.party_id!r} is no longer in the catalog")
    caller = Caller(principal, principal.scope(catalog))
    request.state.caller = caller  # known from here on: the audit log names it, refused or not
    authenticator.throttle(principal)
    return caller


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


class Public(Policy):
    """A route's policy: anyone, unauthenticated (health, readiness, metrics, the API's docs)."""

    permission = None

    async def __call__(self) -> None:
        return None


def _in_catalog(catalog: Catalog, party_id: str) -> bool:
    try:
        catalog.party(party_id)
    except UnknownCustomer:
        return False
    return True


def media_type_of(request: Request) -> str:
    """The body's media type as the request declares it, without parameters, in lower case."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


COLUMNAR_ROUTE = "/v1/events"
"""The one route that takes an Arrow stream (``schemas.columnar``) as well as JSON."""


def _check_json_body(request: Request) -> None:
    """A state change takes JSON or nothing (or an Arrow stream of samples, on ``COLUMNAR_ROUTE``):
    a browser cannot send JSON across sites without a preflight, so a page elsewhere cannot make
    one with a form or ``text/plain``."""
    if request.method not in CHANGES_STATE:
        return
    headers = request.headers
    media_type = media_type_of(request)
    has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
    if media_type == columnar.CONTENT_TYPE and request.url.path == COLUMNAR_ROUTE:
        return  # no more a simple request than JSON is: a browser preflights it too
    if (media_type or has_body) and not (media_type == "application/json" or media_type.endswith("+json")):
        raise UnsupportedMediaType(f"send JSON (application/json), not {media_type or 'an untyped body'}")


def _token_secret(settings: Settings) -> bytes:
    """The configured secret, or one made once and kept in the data dir (one API process there)."""
    if settings.token_secret is not None:
        secret = settings.token_secret.get_secret_value()
        if len(secret) < MIN_TOKEN_SECRET_CHARS:
            raise ValueError(f"METERLINE_TOKEN_SECRET needs at least {MIN_TOKEN_SECRET_CHARS} characters")
        return secret.encode()
    path = Path(settings.data_dir) / "token-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip().encode()


UsageReader = Annotated[Caller, Depends(Requires(Permission.READ_USAGE))]
InvoiceReader = Annotated[Caller, Depends(Requires(Permission.READ_INVOICES))]
InvoiceChanger = Annotated[Caller, Depends(Requires(Permission.CHANGE_INVOICES))]
PeriodCloser = Annotated[Caller, Depends(Requires(Permission.CLOSE_PERIODS))]
CatalogReader = Annotated[Caller, Depends(Requires(Permission.READ_CATALOG))]
CatalogWriter = Annotated[Caller, Depends(Requires(Permission.WRITE_CATALOG))]
OperationsReader = Annotated[Caller, Depends(Requires(Permission.READ_OPERATIONS))]
EventPusher = Annotated[Caller, Depends(Requires(Permission.PUSH_EVENTS))]
KeyManager = Annotated[Caller, Depends(Requires(Permission.MANAGE_KEYS))]
TokenIssuer = Annotated[Caller, Depends(Requires(Permission.ISSUE_TOKENS))]
AuditReader = Annotated[Caller, Depends(Requires(Permission.READ_AUDIT))]
CreditReader = Annotated[Caller, Depends(Requires(Permission.READ_CREDIT))]
CreditManager = Annotated[Caller, Depends(Requires(Permission.MANAGE_CREDIT))]
Payer = Annotated[Caller, Depends(Requires(Permission.PAY))]
PaymentManager = Annotated[Caller, Depends(Requires(Permission.MANAGE_PAYMENTS))]
AlertManager = Annotated[Caller, Depends(Requires(Permission.MANAGE_ALERTS))]


def route_policies(routes: Iterable[BaseRoute]) -> dict[tuple[str, str], Permission | None]:
    """Each documented operation's declared permission (None: public), keyed by method and path.
    An operation declaring no policy, or two, is an error: every route must say who may call it."""
    policies: dict[tuple[str, str], Permission | None] = {}
    for route in api_routes(routes):
        if route.path in DOCUMENTATION_PAGES:
            continue
        declared = [d.call for d in _dependencies(route.dependant) if isinstance(d.call, Policy)]
        methods = sorted(route.methods or ())
        if len(declared) != 1:
            raise ValueError(f"{methods} {route.path} declares {len(declared)} policies, not one")
        policy = cast(Policy, declared[0])
        policies |= {(method, route.path): policy.permission for method in methods}
    return policies


def api_routes(routes: Iterable[BaseRoute]) -> Iterator[APIRoute]:
    """Every APIRoute, those of included routers too (FastAPI keeps an included router whole)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif (included := getattr(route, "original_router", None)) is not None:
            yield from api_routes(included.routes)


def _dependencies(dependant: Dependant) -> Iterator[Dependant]:
    for dependency in dependant.dependencies:
        yield dependency
        yield from _dependencies(dependency)
