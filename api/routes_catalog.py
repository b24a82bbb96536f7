"""Catalog management: parties, products, price lists, taxes, subscriptions, one-time charges.

Every write is a new version of one entry, validated against the whole catalog first (a
customer naming an unknown partner is refused with 422); history stays readable.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel

from api.catalog_admin import CatalogAdmin
from billing.catalog_entries import Entry, EntryKind, assemble
from billing.periods import check_storable
from meterline.exceptions import InvalidQuery
from schemas.clickhouse import as_utc

router = APIRouter(prefix="/v1/catalog", tags=["catalog"])
Document = Annotated[dict[str, Any], Body(description="The entry, as in the catalog YAML")]


class EntryOut(BaseModel):
    kind: str
    id: str
    version: int
    deleted: bool
    document: dict[str, Any] | None

    @classmethod
    def of(cls, entry: Entry) -> EntryOut:
        return cls(
            kind=entry.kind.value,
            id=entry.id,
            version=entry.version,
            deleted=entry.document is None,
            document=entry.document,
        )


class VersionOut(EntryOut):
    recorded_at: datetime


def _admin(request: Request) -> CatalogAdmin:
    admin: CatalogAdmin = request.app.state.catalog_admin
    return admin


@router.get("")
def get_catalog(request: Request, as_of: datetime | None = None) -> dict[str, Any]:
    """The whole catalog now, or as it was recorded at ``as_of`` (UTC)."""
    if as_of is None:
        return _admin(request).catalog.model_dump(mode="json")
    if as_of.tzinfo is None:
        raise InvalidQuery("'as_of' must carry a UTC offset, e.g. 2026-11-01T00:00:00Z")
    check_storable("'as_of'", as_of)
    return assemble(request.app.state.catalog_store.current(as_of)).model_dump(mode="json")


@router.get("/{kind}", response_model=list[EntryOut])
def list_entries(request: Request, kind: EntryKind) -> list[EntryOut]:
    return [EntryOut.of(entry) for entry in _admin(request).entries(kind)]


@router.get("/{kind}/{entry_id}", response_model=EntryOut)
def get_entry(request: Request, kind: EntryKind, entry_id: str) -> EntryOut:
    return EntryOut.of(_admin(request).entry(kind, entry_id))


@router.put("/{kind}/{entry_id}", response_model=EntryOut)
def put_entry(request: Request, kind: EntryKind, entry_id: str, document: Document) -> EntryOut:
    """Create or replace an entry. A price change is a plan with a later ``effective_from``."""
    return EntryOut.of(_admin(request).put(kind, entry_id, document))


@router.delete("/{kind}/{entry_id}", response_model=EntryOut)
def delete_entry(request: Request, kind: EntryKind, entry_id: str) -> EntryOut:
    return EntryOut.of(_admin(request).delete(kind, entry_id))


@router.get("/{kind}/{entry_id}/versions", response_model=list[VersionOut])
def entry_versions(request: Request, kind: EntryKind, entry_id: str) -> list[VersionOut]:
    history = request.app.state.catalog_store.history(kind, entry_id)
    return [VersionOut(**EntryOut.of(entry).model_dump(), recorded_at=as_utc(at)) for entry, at in history]
