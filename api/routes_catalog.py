"""Catalog management: parties, products, price lists, taxes, subscriptions, one-time charges.

Every write is a new version of one entry, validated against the whole catalog first (a
customer naming an unknown partner is refused with 422); history stays readable. Paths name
each section as the catalog document does (``customers``, ``price_lists``, ``provider``...).
A partner or customer sees its own parties and items and the products; a partner writes its
customers, their subscriptions and charges, and its price list.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Request
from pydantic import BaseModel

from api.access.audit import note_change
from api.access.guard import CatalogReader, CatalogWriter
from api.catalog_admin import CatalogAdmin
from api.services import services_of
from billing.catalog_entries import Entry, EntryKind, assemble
from billing.periods import check_storable
from billing.scope import Scope
from meterline.exceptions import InvalidQuery, UnknownEntry
from schemas.identifiers import IDENTIFIER_PATTERN
from storage.connection import as_utc

router = APIRouter(prefix="/v1/catalog", tags=["catalog"])
Document = Annotated[dict[str, Any], Body(description="The entry, as in the catalog YAML")]
EntryId = Annotated[str, Path(pattern=IDENTIFIER_PATTERN, description="The entry's id (a price list's: its seller's)")]
PARTIES = {EntryKind.CUSTOMER, EntryKind.PARTNER}
"""The entries keys and read tokens are issued for."""
Section = StrEnum("Section", {kind.name: kind.section for kind in EntryKind})  # type: ignore[misc]


class EntryOut(BaseModel):
    section: str
    id: str
    version: int
    deleted: bool
    document: dict[str, Any] | None

    @classmethod
    def of(cls, entry: Entry | None) -> EntryOut | None:
        if entry is None:
            return None
        return cls(
            section=entry.kind.section,
            id=entry.id,
            version=entry.version,
            deleted=entry.document is None,
            document=entry.document,
        )


class VersionOut(EntryOut):
    recorded_at: datetime


def _admin(request: Request) -> CatalogAdmin:
    admin: CatalogAdmin = services_of(request).catalog_admin
    return admin


def _revoke_access_of(request: Request, party_id: str) -> None:
    """Keys and read tokens name their party by id: those of a deleted party must not open
    whatever is given its id next."""
    services_of(request).authenticator.keys.revoke_party(party_id, datetime.now(UTC))


def _kind(section: Section) -> EntryKind:
    return EntryKind.of_section(section.value)


@router.get("")
def get_catalog(request: Request, caller: CatalogReader, as_of: datetime | None = None) -> dict[str, Any]:
    """The whole catalog now, or as it was recorded at ``as_of`` (UTC); a tenant gets what it sees."""
    if as_of is None:
        entries = _admin(request).entries(caller.scope)
    else:
        if as_of.tzinfo is None:
            raise InvalidQuery("'as_of' must carry a UTC offset, e.g. 2026-11-01T00:00:00Z")
        check_storable("'as_of'", as_of)
        stored = services_of(request).catalog_store.current(as_of)
        if not stored:
            raise UnknownEntry(f"no catalog was recorded by {as_of.isoformat()}")
        entries = [e for e in stored if e.document is not None and caller.scope.sees_entry(e.kind, e.document)]
    if caller.scope.everything:
        return assemble(entries).model_dump(mode="json")
    return _sections(entries)


@router.get("/{section}", response_model=list[EntryOut])
def list_entries(request: Request, caller: CatalogReader, section: Section) -> list[EntryOut | None]:
    return [EntryOut.of(entry) for entry in _admin(request).entries(caller.scope, _kind(section))]


@router.get("/{section}/{entry_id}", response_model=EntryOut)
def get_entry(request: Request, caller: CatalogReader, section: Section, entry_id: EntryId) -> EntryOut | None:
    return EntryOut.of(_admin(request).entry(caller.scope, _kind(section), entry_id))


@router.post("/{section}", response_model=EntryOut, status_code=201)
def create_entry(request: Request, caller: CatalogWriter, section: Section, document: Document) -> EntryOut | None:
    """A new customer, subscription or one-time charge, under an id meterline makes (leave ``id``
    out; the answer holds it). How a partner adds to the catalog: it may change only what it
    sees, so a ``PUT`` of an id it does not see answers 404, taken or not."""
    after = _admin(request).create(caller.scope, _kind(section), document)
    note_change(request, None, after.document)
    return EntryOut.of(after)


@router.put("/{section}/{entry_id}", response_model=EntryOut)
def put_entry(
    request: Request, caller: CatalogWriter, section: Section, entry_id: EntryId, document: Document
) -> EntryOut | None:
    """Create (the provider) or replace an entry. A price change is a plan with a later
    ``effective_from``. A partner replaces what it sees and starts its own price list; it
    creates customers, subscriptions and charges with ``POST``."""
    kind, admin = _kind(section), _admin(request)
    if kind in PARTIES and not admin.holds(kind, entry_id):
        # a party that had this id before was deleted: if revoking its keys did not finish then,
        # it does now, before anyone else holds the id
        _revoke_access_of(request, entry_id)
    before, after = admin.put(caller.scope, kind, entry_id, document)
    note_change(request, before and before.document, after.document)
    return EntryOut.of(after)


@router.delete("/{section}/{entry_id}", response_model=EntryOut)
def delete_entry(request: Request, caller: CatalogWriter, section: Section, entry_id: EntryId) -> EntryOut | None:
    kind = _kind(section)
    before, after = _admin(request).delete(caller.scope, kind, entry_id)
    if kind in PARTIES:
        _revoke_access_of(request, entry_id)
    note_change(request, before.document, None)
    return EntryOut.of(after)


@router.get("/{section}/{entry_id}/versions", response_model=list[VersionOut])
def entry_versions(request: Request, caller: CatalogReader, section: Section, entry_id: EntryId) -> list[VersionOut]:
    """Every version, deletions included; a tenant sees the history of what it sees now, and of
    that only the versions that were its own (not those of a seller the customer had before)."""
    kind = _kind(section)
    history = services_of(request).catalog_store.history(kind, entry_id)
    if not history or not _sees_history(caller.scope, kind, [entry for entry, _ in history]):
        raise UnknownEntry(f"no {kind.value} {entry_id!r} in the catalog")
    return [
        VersionOut(**EntryOut.model_validate(EntryOut.of(e)).model_dump(), recorded_at=as_utc(at))
        for e, at in _own_versions(caller.scope, kind, history)
    ]


def _own_versions(scope: Scope, kind: EntryKind, history: list[tuple[Entry, datetime]]) -> list[tuple[Entry, datetime]]:
    """The versions a tenant saw when they were in force: a deletion shows if what it deleted did."""
    own, saw_previous = [], False
    for entry, at in history:
        sees = scope.everything or (
            saw_previous if entry.document is None else _was_theirs(scope, kind, entry.document)
        )
        if sees:
            own.append((entry, at))
        saw_previous = sees
    return own


def _was_theirs(scope: Scope, kind: EntryKind, document: dict[str, Any]) -> bool:
    """Whether a version of an entry was the tenant's: a partner's customer is its own only in
    the versions that name it the seller."""
    if kind is EntryKind.CUSTOMER and scope.sellers:
        return document.get("partner_id") in scope.sellers
    return scope.sees_entry(kind, document)


def _sees_history(scope: Scope, kind: EntryKind, versions: list[Entry]) -> bool:
    live = [entry.document for entry in versions if entry.document is not None]
    return scope.everything or (bool(live) and scope.sees_entry(kind, live[-1]))


def _sections(entries: list[Entry]) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    for entry in entries:
        if entry.kind in (EntryKind.SETTINGS, EntryKind.PROVIDER):
            shown[entry.kind.section] = entry.document
        else:
            shown.setdefault(entry.kind.section, []).append(entry.document)
    return shown
