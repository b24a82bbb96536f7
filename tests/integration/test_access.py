"""Who may call what: every route of the OpenAPI document, called by every kind of principal on
its own and on another tenant's objects. A route without a policy, or one that lets a tenant
see or change another's data, fails here: this is what keeps the next route honest.

The tenants: partner ``north`` sells to ``resold``; the provider sells directly to ``direct``
and to partner ``south``, which sells to ``southco``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.access.guard import route_policies
from api.access.principals import PERMISSIONS, TOKEN_PERMISSIONS, Permission, Role
from api.app import create_app
from meterline.brokers import Broker
from meterline.settings import Settings
from schemas.events import encode_batch
from tests.factories import catalog_document, vm_sample
from tests.integration.gateways import gateway_settings
from tests.integration.harness import System, system_with_catalog, wait_for
from tests.integration.test_invoicing import rated_rows

pytestmark = pytest.mark.integration

OCTOBER = datetime(2026, 10, 5, 10, 0, tzinfo=UTC)
DIRECT_INVOICE, NORTH_INVOICE, RESOLD_INVOICE = "2026-10.acme.direct", "2026-10.acme.north", "2026-10.north.resold"
SOUTHCO_INVOICE = "2026-10.south.southco"


@pytest.fixture
def tenants(broker: Broker, stripe_mock: str, tmp_path: Path) -> Iterator[System]:
    document = catalog_document()
    for issuer in (document["provider"], document["partners"][0]):
        issuer["payment"] = {"gateways": ["stripe"]}
    document["partners"].append({"id": "south", "name": "South IT", "invoice_prefix": "STH", "jurisdiction": "FR"})
    document["price_lists"].append({**document["price_lists"][1], "seller_id": "south"})
    document["customers"].append({"id": "southco", "name": "SouthCo", "partner_id": "south"})
    document["customers"][1]["manages_alerts"] = True  # resold; southco does not
    running = system_with_catalog(
        broker,
        tmp_path,
        document,
        METERLINE_WEBHOOK_ALLOWED_HOSTS="127.0.0.1:*",
        METERLINE_PAYMENTS_GATEWAYS=json.dumps(gateway_settings("stripe", stripe_mock)),
        # no automatic charge during the test: a saved card recorded by the matrix would change an invoice
        METERLINE_PAYMENTS_CHARGE_CHECK_INTERVAL_S="3600",
    ).start_all()
    try:
        events = [
            vm_sample(f"vm-{customer}", customer_id=customer, at=OCTOBER)
            for customer in ("direct", "resold", "southco")
        ]
        assert running.http.post("/v1/events", content=encode_batch(events)).status_code == 202
        wait_for(lambda: all(rated_rows(running, c) == 4 for c in ("direct", "resold", "southco")), what="usage")
        assert running.http.post("/v1/periods/2026-10/close").status_code == 200
        # issued: a buyer sees an invoice once it is issued (a draft is its issuer's alone)
        assert running.http.post("/v1/periods/2026-10/issue").status_code == 200
        yield running
    finally:
        running.stop_all()


@dataclass
class Principal:
    name: str
    role: Role | None
    """None: no credential at all."""
    client: httpx.Client
    permissions: frozenset[Permission]
    own: dict[str, str]
    """A value of each path parameter that names the principal's own object."""
    other: dict[str, str]
    """A value of each path parameter that names another tenant's object."""
    others: frozenset[str] = frozenset()
    """Ids no answer to it may contain."""


def make_key(system: System, **wanted: Any) -> dict[str, Any]:
    response = system.http.post("/v1/keys", json={"name": "test", **wanted})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def make_token(system: System, party_id: str, **wanted: Any) -> dict[str, Any]:
    response = system.http.post("/v1/tokens", json={"party_id": party_id, **wanted})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def grant_credit(system: System, holder_id: str) -> str:
    response = system.http.post(
        f"/v1/credit/{holder_id}/grants", json={"amount": "10.00"}, headers={"Idempotency-Key": f"matrix-{holder_id}"}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["grant_id"])


def top_up_plan(system: System, holder_id: str) -> str:
    response = system.http.post(
        f"/v1/credit/{holder_id}/top-up-plans", json={"kind": "threshold", "floor": "1.00", "target": "2.00"}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["plan_id"])


def alerting(client: httpx.Client, customer: str) -> tuple[str, str]:
    """A rule and a webhook endpoint made with ``client``'s key."""
    rule = client.post(
        "/v1/alert-rules",
        json={"target_kind": "customer", "target_id": customer, "condition": "cost_over", "threshold": "1"},
    )
    endpoint = client.post("/v1/webhook-endpoints", json={"url": "http://127.0.0.1:9/hook"})
    assert rule.status_code == endpoint.status_code == 201, (rule.text, endpoint.text)
    return rule.json()["rule_id"], endpoint.json()["endpoint_id"]


def payment_page(system: System, invoice_id: str) -> str:
    response = system.http.post(f"/v1/invoices/{invoice_id}/payment-page")
    assert response.status_code == 201, response.text
    return str(response.json()["payment_id"])


def usage_line(system: System, invoice_id: str) -> str:
    """The number of an invoice's first usage line: the one with usage and events behind it."""
    lines = system.http.get(f"/v1/invoices/{invoice_id}").json()["lines"]
    return str(next(line["line_no"] for line in lines if line["usage_url"]))


def principals(system: System) -> list[Principal]:
    reader = make_key(system, role="reader")
    north = make_key(system, role="partner", party_id="north")
    resold = make_key(system, role="customer", party_id="resold")
    ingest = make_key(system, role="ingest", sources=["test://hv-*"], customers=["direct"])
    resold_grant, direct_grant = (grant_credit(system, holder) for holder in ("resold", "direct"))
    resold_plan, direct_plan = (top_up_plan(system, holder) for holder in ("resold", "direct"))
    provider_rule, provider_endpoint = alerting(system.http, "resold")
    north_rule, north_endpoint = alerting(system.client(north["key"]), "resold")
    resold_rule, resold_endpoint = alerting(system.client(resold["key"]), "resold")
    token = make_token(system, "resold")
    chart = make_token(system, "resold", meters=["vcpu_hours"])
    admin_token = make_token(system, "direct")
    resold_payment, direct_payment = (payment_page(system, invoice) for invoice in (RESOLD_INVOICE, DIRECT_INVOICE))
    other = {
        "payment_id": direct_payment,
        "gateway": "stripe",
        "customer_id": "direct",
        "invoice_id": DIRECT_INVOICE,
        "section": "customers",
        "entry_id": "direct",
        "key_id": reader["key_id"],
        "token_id": admin_token["token_id"],
        "holder_id": "direct",
        "grant_id": direct_grant,
        "plan_id": direct_plan,
        "rule_id": provider_rule,
        "endpoint_id": provider_endpoint,
        "delivery_id": "none.yet@topic:alerts",
    }
    common = {"period": "2026-10", "line_no": usage_line(system, DIRECT_INVOICE), "gateway": "stripe"}
    resold_own = {
        "payment_id": resold_payment,
        "customer_id": "resold",
        "invoice_id": RESOLD_INVOICE,
        "section": "customers",
        "entry_id": "resold",
        "line_no": usage_line(system, RESOLD_INVOICE),
        "holder_id": "resold",
        "grant_id": resold_grant,
        "plan_id": resold_plan,
        "rule_id": resold_rule,
        "endpoint_id": resold_endpoint,
        "delivery_id": "none.yet@topic:alerts",
    }
    north_own = {**resold_own, "rule_id": north_rule, "endpoint_id": north_endpoint}
    tenant_others = frozenset({"direct", "southco", "south", DIRECT_INVOICE, SOUTHCO_INVOICE})
    return [
        Principal("anonymous", None, system.client(None), frozenset(), {**common, **other}, {**common, **other}),
        Principal(
            "reader",
            Role.READER,
            system.client(reader["key"]),
            PERMISSIONS[Role.READER],
            {**common, **other},
            {**common, **other},
        ),
        Principal(
            "partner north",
            Role.PARTNER,
            system.client(north["key"]),
            PERMISSIONS[Role.PARTNER],
            {**common, **north_own, "key_id": north["key_id"], "token_id": token["token_id"]},
            {**common, **other, "invoice_id": SOUTHCO_INVOICE},
            tenant_others,
        ),
        Principal(
            "customer resold",
            Role.CUSTOMER,
            system.client(resold["key"]),
            PERMISSIONS[Role.CUSTOMER],
            {**common, **resold_own, "key_id": resold["key_id"], "token_id": token["token_id"]},
            {**common, **other, "invoice_id": NORTH_INVOICE},
            tenant_others | {NORTH_INVOICE},
        ),
        Principal(
            "ingest key",
            Role.INGEST,
            system.client(ingest["key"]),
            PERMISSIONS[Role.INGEST],
            {**common, **other},
            {**common, **other},
        ),
        Principal(
            "read token of resold",
            Role.CUSTOMER,
            system.client(token["token"]),
            TOKEN_PERMISSIONS,
            {**common, **resold_own, "key_id": resold["key_id"], "token_id": token["token_id"]},
            {**common, **other, "invoice_id": NORTH_INVOICE},
            tenant_others | {NORTH_INVOICE},
        ),
        Principal(
            "chart token of resold",
            Role.CUSTOMER,
            system.client(chart["token"]),
            frozenset({Permission.READ_USAGE}),
            {**common, **resold_own, "key_id": resold["key_id"], "token_id": chart["token_id"]},
            {**common, **other},
            tenant_others,
        ),
    ]


BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/events"): None,  # built per principal: its own source and customer
    ("POST", "/v1/keys"): {"name": "again", "role": "customer", "party_id": "resold"},
    ("POST", "/v1/tokens"): {"party_id": "resold"},
    ("PUT", "/v1/catalog/{section}/{entry_id}"): None,  # the entry as it is
    ("POST", "/v1/catalog/{section}"): {"name": "New Co", "partner_id": "south"},  # another partner's customer
    ("POST", "/v1/credit/{holder_id}/grants"): {"amount": "1.00"},
    ("POST", "/v1/credit/{holder_id}/top-ups"): {"amount": "1.00"},
    ("POST", "/v1/alert-rules"): {
        "target_kind": "customer",
        "target_id": "resold",
        "condition": "cost_over",
        "threshold": "5",
    },
    ("POST", "/v1/webhook-endpoints"): {"url": "http://127.0.0.1:9/other"},
    ("POST", "/v1/credit/{holder_id}/top-up-plans"): {"kind": "recurring", "amount": "1.00"},
    ("POST", "/v1/webhook-endpoints/{endpoint_id}/rotate-secret"): {},
    ("POST", "/v1/credit/{holder_id}/card-top-ups"): {"amount": "1.00"},
    ("POST", "/v1/payments/{payment_id}/refunds"): {"amount": "1.00"},
    ("PUT", "/v1/customers/{customer_id}/saved-card"): {
        "gateway": "stripe",
        "customer_ref": "cus_matrix",
        "method_ref": "pm_card_visa",
    },
}
IDEMPOTENT = {
    ("POST", "/v1/credit/{holder_id}/grants"),
    ("POST", "/v1/credit/{holder_id}/top-ups"),
    ("POST", "/v1/credit/{holder_id}/card-top-ups"),
}
CHANGES_OWN_STATE = {
    ("DELETE", "/v1/keys/{key_id}"),  # would revoke the key the test calls with
    ("DELETE", "/v1/tokens/{token_id}"),  # would revoke the token another principal calls with
    ("DELETE", "/v1/catalog/{section}/{entry_id}"),
    ("POST", "/v1/catalog/{section}"),  # creates: a tenant's own creation is tested on its own
    ("POST", "/v1/invoices/{invoice_id}/issue"),
    ("POST", "/v1/invoices/{invoice_id}/pay"),
    ("POST", "/v1/invoices/{invoice_id}/void"),
    ("DELETE", "/v1/alert-rules/{rule_id}"),
    ("DELETE", "/v1/credit/{holder_id}/top-up-plans/{plan_id}"),
    ("DELETE", "/v1/webhook-endpoints/{endpoint_id}"),
    ("POST", "/v1/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/resend"),  # none was sent yet
    ("POST", "/v1/payments/{payment_id}/refunds"),  # nothing was paid yet: test_payments.py refunds
}
"""Called on other tenants' objects only: on its own, each is a state change tested on its own."""
NO_MAIL_SERVER = {
    ("GET", "/v1/invoices/{invoice_id}/delivery"): 400,
    ("POST", "/v1/invoices/{invoice_id}/deliver"): 400,
}
"""This system has no mail server, so these answer whoever may call them that invoices are not
emailed here (``test_invoice_delivery.py`` calls them with one)."""


def test_every_route_answers_each_principal_with_only_what_is_its_own(tenants: System):
    # the portal's pages take a session cookie, not a bearer credential: test_portal.py walks them
    policies = {
        route: permission
        for route, permission in route_policies(create_app(Settings()).routes).items()
        if not route[1].startswith("/portal")
    }
    documented = {
        (method.upper(), path)
        for path, operations in tenants.http.get("/openapi.json").json()["paths"].items()
        for method in operations
    }
    assert documented == set(policies), "every documented operation is a route with a declared policy"
    catalog_before = tenants.http.get("/v1/catalog").json()
    invoices_before = {i["invoice_id"]: i["status"] for i in tenants.http.get("/v1/invoices").json()}
    failures: list[str] = []
    for principal in principals(tenants):
        for (method, path), permission in sorted(policies.items()):
            for whose in ("own", "other"):
                if whose == "own" and (method, path) in CHANGES_OWN_STATE:
                    continue
                answer = call(tenants, principal, method, path, whose)
                failure = judge(principal, permission, method, path, whose, answer)
                if failure:
                    failures.append(f"{principal.name} {method} {path} ({whose}): {failure}")
    assert not failures, "\n".join(failures)
    assert tenants.http.get("/v1/catalog").json() == catalog_before, "no refused call changed the catalog"
    invoices_after = {i["invoice_id"]: i["status"] for i in tenants.http.get("/v1/invoices").json()}
    assert invoices_after == invoices_before, "no refused call changed an invoice"
    north = tenants.client(make_key(tenants, role="partner", party_id="north")["key"])
    makers = {grant["created_by"] for grant in north.get("/v1/credit/resold/grants").json()}
    assert makers == {None}, "which key made a grant is the provider's to know"
    assert {grant["created_by"] for grant in tenants.http.get("/v1/credit/resold/grants").json()} != {None}
    own = north.post("/v1/credit/north/grants", json={"amount": "1.00"}, headers={"Idempotency-Key": "self"})
    assert own.status_code == 403, "a partner reads its own credit; the provider grants it"
    southco = tenants.client(make_key(tenants, role="customer", party_id="southco")["key"])
    refused = southco.post("/v1/webhook-endpoints", json={"url": "http://127.0.0.1:9/southco"})
    assert refused.status_code == 403 and "manages_alerts" in refused.text, "a customer the catalog does not let"


def call(system: System, principal: Principal, method: str, path: str, whose: str) -> httpx.Response:
    values = principal.own if whose == "own" else principal.other
    concrete = path.format(**{name: values[name] for name in _parameters(path)})
    body = BODIES.get((method, path))
    if (method, path) == ("POST", "/v1/events"):
        customer = "direct" if whose == "own" else "resold"
        event = vm_sample(f"vm-{principal.name.replace(' ', '-')}", customer_id=customer, at=OCTOBER)
        return principal.client.request(method, concrete, content=encode_batch([event]))
    if (method, path) == ("PUT", "/v1/catalog/{section}/{entry_id}"):
        body = (
            system.http.get(concrete).json()["document"] if whose == "own" else {"id": values["entry_id"], "name": "X"}
        )
    key = f"matrix-{principal.name}-{path.rsplit('/', 1)[-1]}".replace(" ", "-")
    headers = {"Idempotency-Key": key} if (method, path) in IDEMPOTENT else {}
    return principal.client.request(method, concrete, json=body, headers=headers)


def judge(
    principal: Principal, permission: Permission | None, method: str, path: str, whose: str, answer: httpx.Response
) -> str | None:
    """What is wrong with the answer, if anything."""
    status = answer.status_code
    if permission is None:
        return None if status < 500 else f"public route failed with {status}"
    if principal.role is None:
        return None if status == 401 else f"anonymous got {status}, not 401"
    if permission not in principal.permissions:
        return None if status == 403 else f"got {status} without {permission.value}, not 403"
    if status >= 500:
        return f"server error {status}: {answer.text[:200]}"
    names_object = any(
        name in path
        for name in (
            "{customer_id}",
            "{invoice_id}",
            "{entry_id}",
            "{key_id}",
            "{token_id}",
            "{holder_id}",
            "{rule_id}",
            "{endpoint_id}",
            "{payment_id}",
        )
    )
    if whose == "other" and names_object and principal.role in (Role.PARTNER, Role.CUSTOMER):
        return None if status == 404 else f"another tenant's object answered {status}, not 404"
    if whose == "other" and (method, path) == ("POST", "/v1/events"):
        return None if status == 422 else f"usage of a customer it is not bound to answered {status}, not 422"
    if status in (401, 403) or (names_object and status == 404):
        return f"its own object answered {status}"
    if whose == "own" and status == NO_MAIL_SERVER.get((method, path)):
        return None
    if whose == "own" and not 200 <= status < 300:
        return f"its own call answered {status}, not 2xx: {answer.text[:200]}"
    leaked = _leaked_ids(answer, principal.others)
    return f"shows {sorted(leaked)}" if leaked else None


def _leaked_ids(answer: httpx.Response, others: frozenset[str]) -> set[str]:
    if not others or not answer.content or not answer.headers.get("content-type", "").startswith("application/json"):
        return set()
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str) and value in others:
            found.add(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(answer.json())
    return found


def _parameters(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]
