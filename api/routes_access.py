"""API keys, read tokens and the audit log, managed by whoever may manage their principal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from pydantic import AfterValidator, BaseModel, Field

from api.access.audit import note_change
from api.access.guard import AuditReader, Authenticator, Caller, KeyManager, TokenIssuer
from api.access.keys import ApiKey, digest, may_manage, new_key_material
from api.access.principals import Principal, Role
from api.access.tokens import LONGEST_LIFETIME, IssuedToken, ReadToken, new_token_id, sign
from api.catalog_admin import CatalogAdmin
from api.services import services_of
from billing.catalog import Catalog, Customer, Identifier, Partner
from billing.periods import check_storable
from meterline.exceptions import Forbidden, InvalidQuery, UnknownCustomer, UnknownEntry
from schemas.identifiers import printable, source_refusal
from schemas.meters import Meter
from storage.audit_log import AuditLog

router = APIRouter(prefix="/v1", tags=["access"])


def _normal_source_pattern(pattern: str) -> str:
    """A source, or a prefix of sources (``vcenter-a/*``), in the one form events may name."""
    reason = source_refusal(pattern[:-1] + "x" if pattern.endswith("*") else pattern)
    if reason is not None:
        raise ValueError(reason)
    return pattern


SourcePattern = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9/][A-Za-z0-9._~:/@-]{0,254}\*?$"),
    AfterValidator(_normal_source_pattern),
]
KeyId = Annotated[str, Path(pattern=r"^[0-9a-f]{12}$", description="A key's id, as listed")]
TokenId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", description="A read token's id, as listed")]


class KeyIn(BaseModel):
    name: Annotated[str, AfterValidator(printable)] = Field(
        min_length=1, max_length=100, description="What the key is for: 'billing export', 'hv-01 agent'"
    )
    role: Role
    party_id: Identifier | None = Field(default=None, description="The partner or customer of such a key")
    sources: list[SourcePattern] = Field(
        default=[], max_length=100, description="Ingest keys: the sources it reports for; 'vcenter-a/*' covers a prefix"
    )
    customers: list[Identifier] = Field(
        default=[], max_length=1000, description="Ingest keys: the only customers it may report for (empty: any)"
    )
    expires_at: datetime | None = None


class KeyOut(BaseModel):
    key_id: str
    prefix: str = Field(description="The key's first characters, to recognise it")
    name: str
    role: Role
    party_id: str | None
    sources: list[str]
    customers: list[str]
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyOut:
        return cls(**{**vars(key), "party_id": key.party_id or None, "prefix": key.prefix})


class NewKeyOut(KeyOut):
    key: str = Field(description="The key itself: shown this once, stored only as a hash")


class TokenIn(BaseModel):
    party_id: Identifier = Field(description="The customer or partner whose data it reads")
    meters: list[Meter] | None = Field(default=None, min_length=1, description="Only these meters' usage (no invoices)")
    ttl_s: int = Field(default=3600, ge=60, le=int(LONGEST_LIFETIME.total_seconds()))


class TokenOut(BaseModel):
    token_id: str
    role: Role
    party_id: str
    meters: list[str] | None
    issued_by: str
    issued_at: datetime
    expires_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, issued: IssuedToken) -> TokenOut:
        token = issued.token
        return cls(
            **{**vars(token), "meters": list(token.meters) if token.meters is not None else None},
            issued_by=issued.issued_by,
            issued_at=issued.issued_at,
            revoked_at=issued.revoked_at,
        )


class NewTokenOut(TokenOut):
    token: str = Field(description="The signed token: send it as a bearer credential")


class AuditEntry(BaseModel):
    at: datetime
    key_id: str
    role: str
    party_id: str
    method: str
    route: str
    path: str
    status: int
    before: object | None
    after: object | None


def _authenticator(request: Request) -> Authenticator:
    authenticator: Authenticator = services_of(request).authenticator
    return authenticator


def _manageable(caller: Caller, key: ApiKey | None, key_id: str) -> ApiKey:
    if key is None or not may_manage(caller.principal, caller.scope, key.role, key.party_id):
        raise UnknownEntry(f"no key {key_id!r}")
    return key


@router.post("/keys", response_model=NewKeyOut, status_code=201)
def create_key(request: Request, caller: KeyManager, wanted: KeyIn) -> NewKeyOut:
    """A new key, returned once. A partner makes keys for itself and its customers, a customer
    for itself; only the provider's admin makes admin, read-only and ingest keys."""
    party_id = wanted.party_id or ""
    if wanted.role.names_a_party != bool(party_id):
        needs = "needs" if wanted.role.names_a_party else "takes no"
        raise InvalidQuery(f"{Principal('', wanted.role).credential} {needs} party_id")
    if wanted.role is Role.INGEST and not wanted.sources:
        raise InvalidQuery("an ingest key needs the sources it reports for")
    if wanted.role is not Role.INGEST and (wanted.sources or wanted.customers):
        raise InvalidQuery("only ingest keys are bound to sources and customers")
    now = datetime.now(UTC)
    if wanted.expires_at is not None and (wanted.expires_at.tzinfo is None or wanted.expires_at <= now):
        raise InvalidQuery("'expires_at' must be a future time with a UTC offset")
    if party_id and not caller.scope.sees_party(party_id):
        raise UnknownEntry(f"no customer or partner {party_id!r}")  # as for a party that does not exist
    if not may_manage(caller.principal, caller.scope, wanted.role, party_id):
        raise Forbidden(f"{caller.principal.credential} may not make {wanted.role.value} keys for this party")
    catalog = _catalog(request)
    if party_id and _role_of_party(catalog, party_id) is not wanted.role:
        raise InvalidQuery(f"no {wanted.role.value} {party_id!r} in the catalog")
    key_id, secret, full = new_key_material()
    key = ApiKey(
        key_id=key_id,
        secret_sha256=digest(secret),
        name=wanted.name,
        role=wanted.role,
        party_id=party_id,
        sources=tuple(wanted.sources),
        customers=tuple(wanted.customers),
        created_by=caller.principal.key_id,
        created_at=now,
        expires_at=wanted.expires_at,
    )
    _authenticator(request).keys.save(key)
    out = KeyOut.of(key)
    note_change(request, None, out.model_dump(mode="json"))
    return NewKeyOut(**out.model_dump(), key=full)


@router.get("/keys", response_model=list[KeyOut])
def list_keys(request: Request, caller: KeyManager) -> list[KeyOut]:
    """The keys the caller may manage, revoked ones included (never their secrets)."""
    keys = _authenticator(request).keys.keys()
    return [KeyOut.of(k) for k in keys if may_manage(caller.principal, caller.scope, k.role, k.party_id)]


@router.get("/keys/{key_id}", response_model=KeyOut)
def get_key(request: Request, caller: KeyManager, key_id: KeyId) -> KeyOut:
    return KeyOut.of(_manageable(caller, _authenticator(request).keys.key(key_id), key_id))


@router.delete("/keys/{key_id}", response_model=KeyOut)
def revoke_key(request: Request, caller: KeyManager, key_id: KeyId) -> KeyOut:
    """Revoke at once (on every API replica within seconds), with the read tokens it issued;
    revoking twice changes nothing."""
    store = _authenticator(request).keys
    key = _manageable(caller, store.key(key_id), key_id)
    now = datetime.now(UTC)
    revoked = key.revoked(now)
    if revoked is not key:
        store.save(revoked)
    store.revoke_tokens(now, lambda issued: issued.issued_by == key.key_id)  # a leaked key's must not outlive it
    note_change(request, KeyOut.of(key).model_dump(mode="json"), KeyOut.of(revoked).model_dump(mode="json"))
    return KeyOut.of(revoked)


@router.post("/tokens", response_model=NewTokenOut, status_code=201)
def issue_token(request: Request, caller: TokenIssuer, wanted: TokenIn) -> NewTokenOut:
    """A signed read token for a customer or partner the caller sees: a portal session, an
    embedded chart (limited to some meters), a link in an email."""
    catalog = _catalog(request)
    role = _role_of_party(catalog, wanted.party_id)
    if role is None or not caller.scope.sees_party(wanted.party_id):
        raise UnknownEntry(f"no customer or partner {wanted.party_id!r}")
    now = datetime.now(UTC)
    meters = tuple(m.value for m in wanted.meters) if wanted.meters is not None else None
    token = ReadToken(new_token_id(), role, wanted.party_id, meters, now + timedelta(seconds=wanted.ttl_s))
    issued = IssuedToken(token, caller.principal.key_id, now)
    authenticator = _authenticator(request)
    authenticator.keys.save_token(issued)
    out = TokenOut.of(issued)
    note_change(request, None, out.model_dump(mode="json"))
    return NewTokenOut(**out.model_dump(), token=sign(token, authenticator.token_secret))


@router.get("/tokens", response_model=list[TokenOut])
def list_tokens(request: Request, caller: TokenIssuer) -> list[TokenOut]:
    """The unexpired read tokens of the parties the caller sees."""
    issued = _authenticator(request).keys.issued_tokens(datetime.now(UTC))
    return [TokenOut.of(t) for t in issued if caller.scope.sees_party(t.token.party_id)]


@router.delete("/tokens/{token_id}", response_model=TokenOut)
def revoke_token(request: Request, caller: TokenIssuer, token_id: TokenId) -> TokenOut:
    store = _authenticator(request).keys
    now = datetime.now(UTC)
    found = [
        t
        for t in store.issued_tokens(now)
        if t.token.token_id == token_id and caller.scope.sees_party(t.token.party_id)
    ]
    if not found:
        raise UnknownEntry(f"no unexpired token {token_id!r}")
    before = found[0]
    after = before if before.revoked_at else IssuedToken(before.token, before.issued_by, before.issued_at, now)
    if after is not before:
        store.save_token(after)
    note_change(request, TokenOut.of(before).model_dump(mode="json"), TokenOut.of(after).model_dump(mode="json"))
    return TokenOut.of(after)


@router.get("/audit", response_model=list[AuditEntry])
def audit_log(
    request: Request,
    _caller: AuditReader,
    start: Annotated[datetime | None, Query(alias="from", description="Inclusive, UTC; default: 24 h ago")] = None,
    end: Annotated[datetime | None, Query(alias="to", description="Exclusive, UTC; default: now")] = None,
    key_id: Annotated[str | None, Query(max_length=80)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[AuditEntry]:
    """Every state-changing call, oldest first: who (key, role, party), what (route, path,
    status), when, and the state before and after."""
    now = datetime.now(UTC)
    start, end = start or now - timedelta(days=1), end or now
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidQuery("'from' and 'to' must carry a UTC offset")
    check_storable("'from'", start)
    check_storable("'to'", end)
    reader: AuditLog = services_of(request).audit_log
    return [AuditEntry(**row) for row in reader.entries(start, end, key_id, limit)]


def _catalog(request: Request) -> Catalog:
    admin: CatalogAdmin = services_of(request).catalog_admin
    return admin.catalog


def _role_of_party(catalog: Catalog, party_id: str) -> Role | None:
    """The role of a key or token for this party: a customer's or a partner's (None: neither)."""
    try:
        party = catalog.party(party_id)
    except UnknownCustomer:
        return None
    if isinstance(party, Customer):
        return Role.CUSTOMER
    return Role.PARTNER if isinstance(party, Partner) else None
