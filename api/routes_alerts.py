"""Credit alert rules, the alerts they fired, enforcement statuses, and the webhook endpoints
alerts are sent to with every delivery's fate.

The provider's admins manage rules and endpoints for anyone; a partner for its customers and
itself; a customer for itself, if the catalog lets it (``manages_alerts``). A customer reads its
own alerts and status.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from api.access.audit import note_change
from api.access.guard import AlertManager, Caller, CreditReader
from api.access.principals import Role
from api.models import CustomerId, DecimalText, FixedPoint
from api.routes_credit import readable_holder
from api.services import services_of
from api.webhooks import PENDING, checked_url, new_secret, secrets_in_force
from billing.alerts import AlertRule, Condition, TargetKind
from billing.catalog import BillingMode, Catalog, Customer, Partner
from meterline.exceptions import Forbidden, LimitReached, UnknownCustomer, UnknownEntry
from schemas.identifiers import IDENTIFIER_PATTERN
from storage.alert_store import AlertStore, DeliveryRow, EndpointRow, RuleRow

Owned = TypeVar("Owned", RuleRow, EndpointRow)

router = APIRouter(prefix="/v1", tags=["credit alerts"])
RuleId = Annotated[str, Path(pattern=r"^r-[0-9a-f]{20}$")]
EndpointId = Annotated[str, Path(pattern=r"^e-[0-9a-f]{20}$")]
DeliveryId = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,300}@[A-Za-z0-9:_-]{1,64}$")]
MAX_OVERLAP = timedelta(days=7)
MAX_RULES = 100
"""Alert rules one owner keeps: each is looked at for every customer it targets on every pass."""
MAX_ENDPOINTS = 10
"""Webhook endpoints one owner keeps: each alert is posted to every one of them."""
MAX_SECRETS = 3
"""Secrets signing an endpoint's messages at once: the newest and two whose overlap runs."""
DeliveryStatus = Literal["pending", "retrying", "delivered", "dead"]


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target_kind: TargetKind = Field(description="customer, partner (its customers) or billing (prepay/postpay)")
    target_id: str = Field(pattern=IDENTIFIER_PATTERN)
    condition: Condition
    threshold: DecimalText = Field(lt=Decimal("1e15"), description="A decimal string")


class RuleOut(BaseModel):
    rule_id: str
    owner_id: str
    target_kind: str
    target_id: str
    condition: str
    threshold: FixedPoint
    created_by: str
    created_at: datetime

    @classmethod
    def of(cls, row: RuleRow) -> RuleOut:
        return cls(**{**vars(row), "threshold": row.threshold.normalize(), "created_at": row.changed_at})


class AlertOut(BaseModel):
    alert_id: str
    rule_id: str
    customer_id: str
    condition: str
    reason: str
    fired_at: datetime
    message: dict[str, Any] = Field(description="The body sent to the alerts topic and endpoints")


class EnforcementOut(BaseModel):
    customer_id: str
    status: str = Field(description="active or suspended")
    reason: str
    since: datetime | None


class EndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000)


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overlap_s: StrictInt = Field(default=86400, ge=0, le=int(MAX_OVERLAP.total_seconds()))


class EndpointOut(BaseModel):
    endpoint_id: str
    owner_id: str
    url: str
    secrets_in_force: int
    created_by: str
    changed_at: datetime
    secret: str | None = Field(default=None, description="Shown once: when made or rotated")


class DeliveryOut(BaseModel):
    delivery_id: str
    message_id: str
    customer_id: str
    status: str = Field(description="pending, retrying, delivered or dead (the dead-letter list)")
    attempts: int
    next_attempt_at: datetime
    last_error: str
    updated_at: datetime


@router.post("/alert-rules", response_model=RuleOut, status_code=201)
def create_rule(request: Request, caller: AlertManager, body: RuleIn) -> RuleOut:
    """A rule firing once per crossing for one customer, a partner's customers, or every
    customer billed pre-pay or post-pay (the provider only)."""
    catalog = _managing(request, caller)
    _check_target(catalog, caller, body.target_kind, body.target_id)
    owner = _owner(catalog, caller)
    rule = AlertRule(
        "r-" + secrets.token_hex(10), owner, body.target_kind, body.target_id, body.condition, body.threshold
    )
    row = RuleRow(
        rule.rule_id,
        rule.owner_id,
        rule.target_kind.value,
        rule.target_id,
        rule.condition.value,
        rule.threshold,
        False,
        caller.principal.key_id,
        datetime.now(UTC),
    )
    with _store(request).changing:
        kept = [row for row in _store(request).rules() if row.owner_id == owner]
        for kept_row in kept:
            if (kept_row.target_kind, kept_row.target_id, kept_row.condition, kept_row.threshold) == (
                row.target_kind,
                row.target_id,
                row.condition,
                row.threshold,
            ):
                raise LimitReached(f"alert rule {kept_row.rule_id} already watches this")
        if len(kept) >= MAX_RULES:
            raise LimitReached(f"{owner} keeps {MAX_RULES} alert rules, the most it may: delete one first")
        _store(request).save([row])
    services_of(request).credit.watch_again({c.id for c in catalog.customers})
    note_change(request, None, {"rule_id": row.rule_id})
    return RuleOut.of(row)


@router.get("/alert-rules", response_model=list[RuleOut])
def list_rules(request: Request, caller: CreditReader) -> list[RuleOut]:
    """The rules the caller's party made (the provider's keys: every rule)."""
    return [RuleOut.of(row) for row in _own_rules(request, caller)]


@router.delete("/alert-rules/{rule_id}", status_code=204)
def delete_rule(request: Request, caller: AlertManager, rule_id: RuleId) -> None:
    _managing(request, caller)
    found = [row for row in _own_rules(request, caller) if row.rule_id == rule_id]
    if not found:
        raise UnknownEntry(f"no alert rule {rule_id!r}")
    _store(request).save([replace(found[0], deleted=True, changed_at=datetime.now(UTC))])
    note_change(request, {"rule_id": rule_id}, None)


@router.get("/credit/{holder_id}/alerts", response_model=list[AlertOut])
def customer_alerts(request: Request, caller: CreditReader, holder_id: CustomerId) -> list[AlertOut]:
    """Every alert fired for the customer, the newest first, with when and why."""
    readable_holder(request, caller, holder_id)
    return [AlertOut(**{**vars(a), "message": json.loads(a.payload)}) for a in _store(request).alerts(holder_id)]


@router.get("/credit/{holder_id}/enforcement", response_model=EnforcementOut)
def enforcement(request: Request, caller: CreditReader, holder_id: CustomerId) -> EnforcementOut:
    """Whether the customer is suspended (a pre-pay customer out of credit beyond its grace)."""
    readable_holder(request, caller, holder_id)
    rows = [row for row in _store(request).enforcement() if row.customer_id == holder_id]
    if not rows:
        return EnforcementOut(customer_id=holder_id, status="active", reason="never suspended", since=None)
    return EnforcementOut(customer_id=holder_id, status=rows[0].status, reason=rows[0].reason, since=rows[0].changed_at)


@router.post("/webhook-endpoints", response_model=EndpointOut, status_code=201)
def create_endpoint(request: Request, caller: AlertManager, body: EndpointIn) -> EndpointOut:
    """An endpoint receiving the alerts of every customer its owner sees, signed with the secret
    returned here (once)."""
    catalog = _managing(request, caller)
    url = checked_url(body.url, services_of(request).webhook_hosts)
    owner = _owner(catalog, caller)
    with _store(request).changing:
        kept = [row for row in _store(request).endpoints() if row.owner_id == owner]
        for row in kept:
            if row.url == url:
                raise LimitReached(f"webhook endpoint {row.endpoint_id} already calls {url}")
        if len(kept) >= MAX_ENDPOINTS:
            raise LimitReached(f"{owner} keeps {MAX_ENDPOINTS} webhook endpoints, the most it may: delete one first")
        secret, now = new_secret(), datetime.now(UTC)
        row = EndpointRow(
            "e-" + secrets.token_hex(10), owner, url, [secret], [None], False, caller.principal.key_id, now
        )
        _store(request).save([row])
    note_change(request, None, {"endpoint_id": row.endpoint_id, "url": url})
    return _endpoint_out(row, now, secret)


@router.get("/webhook-endpoints", response_model=list[EndpointOut])
def list_endpoints(request: Request, caller: CreditReader) -> list[EndpointOut]:
    now = datetime.now(UTC)
    return [_endpoint_out(row, now) for row in _own_endpoints(request, caller)]


@router.post("/webhook-endpoints/{endpoint_id}/rotate-secret", response_model=EndpointOut)
def rotate_secret(request: Request, caller: AlertManager, endpoint_id: EndpointId, body: RotateIn) -> EndpointOut:
    """A new secret signs from now on; the ones in force keep signing for ``overlap_s`` more (0:
    they stop now). At most ``MAX_SECRETS`` sign at once."""
    with _store(request).changing:  # a rotation starts from the one before it
        row = _own_endpoint(request, caller, endpoint_id)
        now, secret = datetime.now(UTC), new_secret()
        ends = now + timedelta(seconds=body.overlap_s)
        kept = secrets_in_force(row, now) if body.overlap_s else []
        if len(kept) >= MAX_SECRETS:
            last = min(until for _, until in kept if until is not None)
            raise LimitReached(
                f"{len(kept)} secrets sign already: rotate again after {last:%Y-%m-%dT%H:%M:%SZ}, or with overlap_s 0"
            )
        rotated = replace(
            row,
            secrets=[*(s for s, _ in kept), secret],
            secrets_until=[*(min(u, ends) if u else ends for _, u in kept), None],
            changed_at=now,
        )
        _store(request).save([rotated])
    note_change(request, None, {"endpoint_id": endpoint_id, "rotated": True})
    return _endpoint_out(rotated, now, secret)


@router.delete("/webhook-endpoints/{endpoint_id}", status_code=204)
def delete_endpoint(request: Request, caller: AlertManager, endpoint_id: EndpointId) -> None:
    row = _own_endpoint(request, caller, endpoint_id)
    _store(request).save([replace(row, deleted=True, changed_at=datetime.now(UTC))])
    note_change(request, {"endpoint_id": endpoint_id}, None)


@router.get("/webhook-endpoints/{endpoint_id}/deliveries", response_model=list[DeliveryOut])
def deliveries(
    request: Request, caller: AlertManager, endpoint_id: EndpointId, status: DeliveryStatus | None = None
) -> list[DeliveryOut]:
    """What was sent to the endpoint, the newest first; ``status=dead``: the dead-letter list."""
    _own_endpoint(request, caller, endpoint_id)
    rows = _store(request).deliveries(endpoint_id)
    return [DeliveryOut.model_validate(row, from_attributes=True) for row in rows if status in (None, row.status)]


@router.post("/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/resend", response_model=DeliveryOut)
def resend(request: Request, caller: AlertManager, endpoint_id: EndpointId, delivery_id: DeliveryId) -> DeliveryOut:
    """Send a delivery again now (a dead one too): same message id, a new timestamp."""
    _own_endpoint(request, caller, endpoint_id)
    found = [row for row in _store(request).deliveries(endpoint_id) if row.delivery_id == delivery_id]
    if not found:
        raise UnknownEntry(f"no delivery {delivery_id!r} to this endpoint")
    now = datetime.now(UTC)
    again: DeliveryRow = replace(found[0], status=PENDING, attempts=0, next_attempt_at=now, updated_at=now)
    _store(request).save([again])
    note_change(request, {"status": found[0].status}, {"delivery_id": delivery_id, "status": PENDING})
    return DeliveryOut.model_validate(again, from_attributes=True)


def _store(request: Request) -> AlertStore:
    store: AlertStore = services_of(request).alert_store
    return store


def _catalog(request: Request) -> Catalog:
    catalog: Catalog = services_of(request).catalog_admin.catalog
    return catalog


def _managing(request: Request, caller: Caller) -> Catalog:
    """The catalog, once the caller may manage alerts: a customer's key only if the catalog
    lets that customer (``manages_alerts``)."""
    catalog = _catalog(request)
    if caller.principal.role is Role.CUSTOMER:
        customer = catalog.party(caller.principal.party_id or "")
        if not isinstance(customer, Customer) or not customer.manages_alerts:
            raise Forbidden(f"{caller.principal.party_id} does not manage its own alerts (catalog: manages_alerts)")
    return catalog


def _owner(catalog: Catalog, caller: Caller) -> str:
    return caller.principal.party_id or catalog.provider.id


def _check_target(catalog: Catalog, caller: Caller, kind: TargetKind, target_id: str) -> None:
    """The provider targets anyone; a partner one of its customers, or all of them."""
    if kind is TargetKind.BILLING:
        if not caller.scope.everything:
            raise UnknownCustomer("only the provider targets every customer billed one way")
        if target_id not in {mode.value for mode in BillingMode}:
            raise UnknownEntry(f"billing is prepay or postpay, not {target_id!r}")
        return
    party = catalog.party(target_id) if caller.scope.sees_party(target_id) else None
    wanted = Customer if kind is TargetKind.CUSTOMER else Partner
    if not isinstance(party, wanted) or (kind is TargetKind.CUSTOMER and not caller.scope.sees_customer(target_id)):
        raise UnknownCustomer(f"no {kind.value} {target_id!r}")


def _own_rules(request: Request, caller: Caller) -> list[RuleRow]:
    return _owned(_store(request).rules(), caller)


def _own_endpoints(request: Request, caller: Caller) -> list[EndpointRow]:
    return _owned(_store(request).endpoints(), caller)


def _owned(rows: list[Owned], caller: Caller) -> list[Owned]:
    """The rows the caller made (or, for the provider, every row)."""
    if caller.scope.everything:
        return rows
    return [row for row in rows if row.owner_id == caller.principal.party_id]


def _own_endpoint(request: Request, caller: Caller, endpoint_id: str) -> EndpointRow:
    _managing(request, caller)
    found = [row for row in _own_endpoints(request, caller) if row.endpoint_id == endpoint_id]
    if not found:
        raise UnknownEntry(f"no webhook endpoint {endpoint_id!r}")
    return found[0]


def _endpoint_out(row: EndpointRow, now: datetime, secret: str | None = None) -> EndpointOut:
    return EndpointOut(
        endpoint_id=row.endpoint_id,
        owner_id=row.owner_id,
        url=row.url,
        secrets_in_force=len(secrets_in_force(row, now)),
        created_by=row.created_by,
        changed_at=row.changed_at,
        secret=secret,
    )
