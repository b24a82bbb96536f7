"""Prepaid credit: grants and top-ups, the ledger, the balance and when it runs out.

A holder is a customer, or a partner for what it buys from the provider. The provider's admins
manage every holder's credit, a partner its customers' (not its own); a customer, and a partner,
read their own.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Path, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from api.access.audit import note_change
from api.access.guard import Caller, CreditManager, CreditReader
from api.credit_accounts import CreditAccounts, GrantRequest
from api.models import CustomerId, DecimalText, FixedPoint, TimeText
from api.services import services_of
from billing.burn_rate import shown_rate
from billing.catalog import Catalog, Customer, Partner
from billing.credits import CreditEntry, EntryKind
from billing.money import minor_unit, round_money
from billing.periods import check_storable
from billing.scope import customer_scope, partner_scope
from meterline.exceptions import (
    Forbidden,
    IdempotencyConflict,
    InvalidQuery,
    InvalidRange,
    LimitReached,
    UnknownCustomer,
    UnknownEntry,
)
from schemas.identifiers import IDENTIFIER_PATTERN
from schemas.meters import Meter
from storage.alert_store import TopUpPlanRow
from storage.connection import to_the_millisecond
from storage.credit_store import StoredGrant

router = APIRouter(prefix="/v1/credit", tags=["prepaid credit"])
PlanId = Annotated[str, Path(pattern=r"^p-[0-9a-f]{20}$")]
MAX_AMOUNT = Decimal("1e15")
EXACT = Decimal("1e-12")
METERED_PRODUCTS = ("vm", "vdc")
"""What the stream names the usage of VMs and vDCs (``pipeline/metering.py``); an XaaS item's
product is its sku, a catalog product."""
IdempotencyHeader = Header(
    alias="Idempotency-Key",
    pattern=r"^[A-Za-z0-9][A-Za-z0-9._:~-]{0,127}$",
    description="The same key again returns what the first request made; with another request, 409",
)
IdempotencyKey = Annotated[str, IdempotencyHeader]
Amount = Annotated[DecimalText, Field(gt=0, lt=MAX_AMOUNT, description="A decimal string in the currency's unit")]


class GrantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Amount
    currency: str | None = Field(default=None, description="Default: the catalog's currency")
    effective_at: TimeText | None = Field(default=None, description="UTC; default: now")
    expires_at: TimeText | None = Field(default=None, description="UTC, exclusive; default: never")
    priority: StrictInt = Field(default=0, ge=0, le=1000, description="Lower burns first (after scope)")
    scope: list[Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]] = Field(
        default=[], max_length=100, description="Products or meters it pays for; empty: anything"
    )
    paid: StrictBool = False
    paid_amount: Amount | None = Field(default=None, description="What was paid for a paid grant")


class TopUpIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Amount
    currency: str | None = None
    paid_amount: Amount | None = Field(default=None, description="Default: the amount")
    expires_at: TimeText | None = None


class GrantOut(BaseModel):
    grant_id: str
    holder_id: str
    origin: str = Field(description="grant or top_up")
    currency: str
    amount: FixedPoint
    effective_at: datetime
    expires_at: datetime | None
    priority: int
    scope: list[str]
    paid: bool
    paid_amount: FixedPoint | None
    created_by: str | None = Field(description="The key that made it: shown to the provider only")
    created_at: datetime

    @classmethod
    def of(cls, stored: StoredGrant, caller: Caller) -> GrantOut:
        grant = stored.grant
        return cls(
            **{name: getattr(grant, name) for name in ("grant_id", "holder_id", "currency", "priority")},
            amount=round_money(grant.amount, grant.currency),
            origin=stored.origin.value,
            effective_at=grant.effective_at,
            expires_at=grant.expires_at,
            scope=sorted(grant.scope),
            paid=grant.paid,
            paid_amount=None if grant.paid_amount is None else round_money(grant.paid_amount, grant.currency),
            created_by=creator(stored.created_by, caller),
            created_at=stored.created_at,
        )


class EntryOut(BaseModel):
    entry_id: str
    grant_id: str = Field(description="Empty for what no grant covered (kind uncovered)")
    kind: str
    amount: FixedPoint = Field(description="Signed: what it added to (or took from) the grant, exact")
    at: datetime
    reference: str = Field(description="What caused it: usage/<currency>/<hour>/<product>/<meter> for usage")

    @classmethod
    def of(cls, entry: CreditEntry) -> EntryOut:
        return cls(**{**vars(entry), "kind": entry.kind.value, "amount": entry.amount.quantize(EXACT)})


class CurrencyBalance(BaseModel):
    currency: str
    balance: FixedPoint = Field(description="Rounded to the currency's minor unit")
    granted: FixedPoint = Field(description="What the grants in force gave")
    burn_rate_per_hour: FixedPoint = Field(
        description="billing/burn_rate.py: the recent hours' cost per hour, to 6 places"
    )
    runs_out_at: datetime | None = Field(description="At that rate; null if nothing is spent")


class BalanceOut(BaseModel):
    holder_id: str
    at: datetime
    balances: list[CurrencyBalance]


@router.post("/{holder_id}/grants", response_model=GrantOut, status_code=201)
def create_grant(
    request: Request, caller: CreditManager, holder_id: CustomerId, body: GrantIn, idempotency_key: IdempotencyKey
) -> GrantOut:
    """Grant credit (free, or paid with what was paid); the same ``Idempotency-Key`` again
    returns the grant made the first time."""
    return _grant(request, caller, holder_id, body, idempotency_key, EntryKind.GRANT)


@router.post("/{holder_id}/top-ups", response_model=GrantOut, status_code=201)
def top_up(
    request: Request, caller: CreditManager, holder_id: CustomerId, body: TopUpIn, idempotency_key: IdempotencyKey
) -> GrantOut:
    """Add paid credit, in force now, for anything; the same ``Idempotency-Key`` again returns
    the same top-up."""
    paid_amount = body.amount if body.paid_amount is None else body.paid_amount
    asked = GrantIn(
        amount=body.amount, currency=body.currency, expires_at=body.expires_at, paid=True, paid_amount=paid_amount
    )
    return _grant(request, caller, holder_id, asked, idempotency_key, EntryKind.TOP_UP)


@router.get("/{holder_id}/grants", response_model=list[GrantOut])
def list_grants(request: Request, caller: CreditReader, holder_id: CustomerId) -> list[GrantOut]:
    readable_holder(request, caller, holder_id)
    return [GrantOut.of(stored, caller) for stored in _accounts(request).grants(holder_id)]


@router.post("/{holder_id}/grants/{grant_id}/void", response_model=list[EntryOut])
def void_grant(request: Request, caller: CreditManager, holder_id: CustomerId, grant_id: CustomerId) -> list[EntryOut]:
    """Take away what a grant still holds; it pays for nothing from now on."""
    _manageable(request, caller, holder_id)
    entries = _accounts(request).void(holder_id, grant_id, datetime.now(UTC))
    note_change(request, None, {"holder_id": holder_id, "voided": grant_id})
    return [EntryOut.of(entry) for entry in entries]


@router.get("/{holder_id}/ledger", response_model=list[EntryOut])
def ledger(request: Request, caller: CreditReader, holder_id: CustomerId) -> list[EntryOut]:
    """Every change to what the holder's grants hold, in the order they apply: grants, top-ups,
    burns (one per grant an hour of a meter's usage took from), adjustments, expiries, voids,
    and what no grant covered."""
    readable_holder(request, caller, holder_id)
    return [EntryOut.of(entry) for entry in _accounts(request).ledger(holder_id)]


@router.get("/{holder_id}/balance", response_model=BalanceOut)
def balance(request: Request, caller: CreditReader, holder_id: CustomerId, at: TimeText | None = None) -> BalanceOut:
    """What the holder may spend now (usage burns it within seconds of being stored), or as the
    ledger stood at ``at``; with the recent burn rate and when the credit runs out at it."""
    catalog = readable_holder(request, caller, holder_id)
    now = datetime.now(UTC)
    accounts = _accounts(request)
    asked = _utc(at, "at")
    if asked is not None and asked > now:
        raise InvalidQuery(f"at {asked.isoformat()} is to come: a balance is known up to now")
    held = accounts.balance(holder_id, now, asked)
    services = services_of(request)
    if isinstance(_holder(catalog, holder_id), Partner):
        customers = services.dashboards.recent_costs(partner_scope(catalog, holder_id), now).values()
        first = min((cost.first_usage_hour for cost in customers if cost.first_usage_hour), default=None)
        recent = services.partner_credit.recent_cost(catalog, holder_id, first, now)
    else:
        costs = services.dashboards.recent_costs(customer_scope(holder_id), now)
        recent = {currency: cost for (_, currency), cost in costs.items()}
    return BalanceOut(
        holder_id=holder_id,
        at=held.at,
        balances=[
            CurrencyBalance(
                currency=figure.currency,
                balance=round_money(figure.balance, figure.currency),
                granted=round_money(held.granted.get(figure.currency, Decimal(0)), figure.currency),
                burn_rate_per_hour=shown_rate(figure.rate_per_hour),
                runs_out_at=figure.runs_out_at,
            )
            for figure in accounts.forecast(held, recent, now)
        ],
    )


class TopUpPlanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["recurring", "threshold"]
    amount: Amount | None = Field(default=None, description="recurring: granted free each month, expiring with it")
    floor: DecimalText | None = Field(default=None, lt=MAX_AMOUNT, description="threshold: top up when under it")
    target: Amount | None = Field(default=None, description="threshold: top up to it (paid), above the floor")


class TopUpPlanOut(BaseModel):
    plan_id: str
    holder_id: str
    kind: str
    amount: FixedPoint
    floor: FixedPoint
    target: FixedPoint
    created_by: str | None = Field(description="The key that made it: shown to the provider only")
    created_at: datetime


@router.post("/{holder_id}/top-up-plans", response_model=TopUpPlanOut, status_code=201)
def create_top_up_plan(
    request: Request,
    caller: CreditManager,
    holder_id: CustomerId,
    body: TopUpPlanIn,
    idempotency_key: Annotated[str | None, IdempotencyHeader] = None,
) -> TopUpPlanOut:
    """A recurring grant each month (``amount``, free, expiring at the month's end), or a paid
    top-up to ``target`` whenever the balance falls under ``floor``: each once per month or per
    crossing. A holder has at most one plan of each kind; the same ``Idempotency-Key`` again
    returns the plan made the first time."""
    catalog = _manageable(request, caller, holder_id)
    zero = Decimal(0)
    if body.kind == "recurring":
        if body.amount is None or body.floor is not None or body.target is not None:
            raise InvalidQuery("a recurring plan takes an amount, and no floor or target")
        figures = (body.amount, zero, zero)
    else:
        if body.floor is None or body.target is None or body.amount is not None or body.target <= body.floor:
            raise InvalidQuery("a threshold plan takes a floor and a target above it, and no amount")
        figures = (zero, body.floor, body.target)
    _currency(catalog, holder_id, None, *figures)
    plan_id = "p-" + (
        hashlib.sha256(f"{holder_id}\n{idempotency_key}".encode()).hexdigest()[:20]
        if idempotency_key
        else secrets.token_hex(10)
    )
    store = services_of(request).alert_store
    with store.changing:
        for kept in store.top_up_plans():
            if kept.holder_id != holder_id or kept.kind != body.kind:
                continue
            if kept.plan_id == plan_id and (kept.amount, kept.floor, kept.target) == figures:
                return _plan_out(kept, caller, catalog.currency_of(holder_id))
            raise (IdempotencyConflict if kept.plan_id == plan_id else LimitReached)(
                f"{holder_id} has {body.kind} top-up plan {kept.plan_id}: delete it to make another"
            )
        row = TopUpPlanRow(plan_id, holder_id, body.kind, *figures, False, caller.principal.key_id, datetime.now(UTC))
        store.save([row])
    services_of(request).credit.watch_again({holder_id})  # a threshold plan may be crossed already
    note_change(request, None, {"plan_id": row.plan_id})
    return _plan_out(row, caller, catalog.currency_of(row.holder_id))


@router.get("/{holder_id}/top-up-plans", response_model=list[TopUpPlanOut])
def list_top_up_plans(request: Request, caller: CreditReader, holder_id: CustomerId) -> list[TopUpPlanOut]:
    catalog = readable_holder(request, caller, holder_id)
    plans = services_of(request).alert_store.top_up_plans()
    return [_plan_out(row, caller, catalog.currency_of(row.holder_id)) for row in plans if row.holder_id == holder_id]


@router.delete("/{holder_id}/top-up-plans/{plan_id}", status_code=204)
def delete_top_up_plan(request: Request, caller: CreditManager, holder_id: CustomerId, plan_id: PlanId) -> None:
    _manageable(request, caller, holder_id)
    store = services_of(request).alert_store
    found = [row for row in store.top_up_plans() if row.holder_id == holder_id and row.plan_id == plan_id]
    if not found:
        raise UnknownEntry(f"no top-up plan {plan_id!r} of {holder_id!r}")
    store.save([replace(found[0], deleted=True, changed_at=datetime.now(UTC))])
    note_change(request, {"plan_id": plan_id}, None)


def _plan_out(row: TopUpPlanRow, caller: Caller, currency: str) -> TopUpPlanOut:
    figures = {name: round_money(getattr(row, name), currency) for name in ("amount", "floor", "target")}
    return TopUpPlanOut(
        **{**vars(row), **figures, "created_by": creator(row.created_by, caller), "created_at": row.changed_at}
    )


def creator(key_id: str, caller: Caller) -> str | None:
    """Which key made something: the provider's to know (another tenant's key ids are not
    shown, nor the provider's to its tenants)."""
    return key_id if caller.scope.everything else None


def _grant(
    request: Request, caller: Caller, holder_id: str, body: GrantIn, idempotency_key: str, origin: EntryKind
) -> GrantOut:
    catalog = _manageable(request, caller, holder_id)
    now = to_the_millisecond(datetime.now(UTC))
    grant_request = GrantRequest(
        holder_id=holder_id,
        currency=_currency(catalog, holder_id, body.currency, body.amount, body.paid_amount),
        amount=body.amount,
        effective_at=_utc(body.effective_at, "effective_at") or now,
        expires_at=_utc(body.expires_at, "expires_at"),
        priority=body.priority,
        scope=_scope(catalog, body.scope),
        paid=body.paid,
        paid_amount=body.paid_amount,
        idempotency_key=idempotency_key,
        asked=_asked(origin, body),
    )
    made = _accounts(request).grant(grant_request, origin, caller.principal.key_id, now)
    note_change(request, None, {"holder_id": holder_id, "grant_id": made.grant.grant_id})
    return GrantOut.of(made, caller)


def _asked(origin: EntryKind, body: GrantIn) -> str:
    """What the caller asked, written one way: "5.0" and "5.00", or Z and +00:00, are the same ask."""
    fields = {
        name: format(value.normalize(), "f")
        if isinstance(value, Decimal)
        else _utc(value, name).isoformat()  # type: ignore[union-attr]
        if isinstance(value, datetime)
        else sorted(value)
        if isinstance(value, list)
        else value
        for name, value in body.model_dump().items()
    }
    return f"{origin.value} {json.dumps(fields, sort_keys=True)}"


def _accounts(request: Request) -> CreditAccounts:
    accounts: CreditAccounts = services_of(request).credit
    return accounts


def _holder(catalog: Catalog, holder_id: str) -> Customer | Partner:
    party = catalog.party(holder_id)
    if not isinstance(party, Customer | Partner):
        raise UnknownCustomer(f"no customer or partner {holder_id!r} holds credit")
    return party


def readable_holder(request: Request, caller: Caller, holder_id: str) -> Catalog:
    """The catalog, once ``holder_id`` is a customer or partner the caller sees (404 otherwise)."""
    catalog: Catalog = services_of(request).catalog_admin.catalog
    if not caller.scope.sees_party(holder_id):
        raise UnknownCustomer(f"no customer or partner {holder_id!r}")
    _holder(catalog, holder_id)
    return catalog


def _manageable(request: Request, caller: Caller, holder_id: str) -> Catalog:
    """The provider manages anyone's credit; a partner its customers', not its own."""
    catalog = readable_holder(request, caller, holder_id)
    if not caller.scope.sees_customer(holder_id):  # it may read its own credit, not grant it
        raise Forbidden(f"this key does not manage the credit of {holder_id!r}: the provider does")
    return catalog


def _currency(catalog: Catalog, holder_id: str, currency: str | None, *amounts: Decimal | None) -> str:
    """The grant's currency (the holder's), its amounts checked to be whole minor units of it."""
    own = catalog.currency_of(holder_id)
    if currency is not None and currency != own:
        raise InvalidQuery(f"currency {currency!r}: {holder_id} is billed in {own}")
    step = minor_unit(own)
    for amount in amounts:
        if amount is not None and amount != amount.quantize(step):
            raise InvalidQuery(f"{amount} is not a whole number of {own}'s minor unit ({step})")
    return own


def _scope(catalog: Catalog, scope: list[str]) -> frozenset[str]:
    skus = {plan.dimension for prices in catalog.price_lists for plan in prices.plans if Meter(plan.meter).is_xaas} - {
        "*"
    }
    known = (
        {product.id for product in catalog.products} | skus | set(METERED_PRODUCTS) | {meter.value for meter in Meter}
    )
    unknown = sorted(set(scope) - known)
    if unknown:
        raise InvalidQuery(f"scope names no product or meter: {', '.join(unknown)}")
    return frozenset(scope)


def _utc(at: datetime | None, name: str) -> datetime | None:
    """``at`` in UTC to the millisecond storage keeps (so what is checked is what is stored),
    within the years storage holds."""
    if at is None:
        return None
    if at.tzinfo is None or at.utcoffset() is None:
        raise InvalidQuery(f"{name} needs its time zone (UTC: a trailing Z)")
    try:
        utc = at.astimezone(UTC)
    except OverflowError:
        raise InvalidRange(f"{name} {at.isoformat()} is outside what storage holds") from None
    check_storable(name, utc)
    return to_the_millisecond(utc)
