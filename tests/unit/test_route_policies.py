"""Every route says who may call it; the integration test ``test_access`` checks that it holds."""

from __future__ import annotations

from api.access.guard import DOCUMENTATION_PAGES, api_routes, route_policies
from api.access.principals import Permission
from api.app import create_app
from meterline.settings import Settings

READS = {p for p in Permission if p.value.startswith("read_")}


def test_every_operation_declares_one_policy_and_only_health_metrics_are_public():
    routes = create_app(Settings()).routes
    policies = route_policies(routes)
    served = {(method, route.path) for route in api_routes(routes) for method in route.methods}
    served -= {("GET", path) for path in DOCUMENTATION_PAGES}
    assert served == set(policies), "each operation served has a policy, hidden from the docs or not"
    public = {path for (_, path), permission in policies.items() if permission is None}
    # a gateway signs its webhooks, and a payment link is signed for its one invoice
    signed = {"/v1/payments/webhooks/{gateway}", "/portal/pay/{invoice_id}/{mac}"}
    assert public == {"/healthz", "/readyz", "/metrics", "/portal/sign-in", "/portal/static/portal.css"} | signed
    assert policies[("POST", "/v1/invoices/{invoice_id}/payment-page")] is Permission.PAY
    assert policies[("POST", "/portal/invoices/{invoice_id}/pay")] is Permission.PAY
    assert policies[("POST", "/v1/payments/{payment_id}/refunds")] is Permission.MANAGE_PAYMENTS
    assert policies[("PUT", "/v1/customers/{customer_id}/saved-card")] is Permission.MANAGE_PAYMENTS
    portal = {key: permission for key, permission in policies.items() if key[1].startswith("/portal/")}
    assert portal[("GET", "/portal/invoices/{invoice_id}")] is Permission.READ_INVOICES
    assert portal[("GET", "/portal/credit/{holder_id}")] is Permission.READ_CREDIT
    assert policies[("POST", "/v1/periods/{period}/close")] is Permission.CLOSE_PERIODS
    assert policies[("GET", "/v1/customers/{customer_id}/usage")] is Permission.READ_USAGE
    assert policies[("GET", "/v1/costs")] is Permission.READ_USAGE
    assert policies[("GET", "/v1/ingest")] is Permission.READ_OPERATIONS
    # signing out of the portal stores nothing: it clears the browser's own cookie
    changes = {key: permission for key, permission in policies.items() if key != ("POST", "/portal/sign-out")}
    writes = {key: permission for key, permission in changes.items() if key[0] in {"POST", "PUT", "DELETE"}}
    assert not {key for key, permission in writes.items() if permission in READS}, "no write with a read permission"
