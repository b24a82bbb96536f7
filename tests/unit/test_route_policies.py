"""Every route says who may call it; the integration test ``test_access`` checks that it holds."""

from __future__ import annotations

from api.access.guard import route_policies
from api.access.principals import Permission
from api.app import create_app
from meterline.settings import Settings


def test_every_operation_declares_one_policy_and_only_health_metrics_are_public():
    policies = route_policies(create_app(Settings()).routes)
    public = {path for (_, path), permission in policies.items() if permission is None}
    assert public == {"/healthz", "/readyz", "/metrics"}
    assert policies[("POST", "/v1/periods/{period}/close")] is Permission.CLOSE_PERIODS
    assert policies[("GET", "/v1/customers/{customer_id}/usage")] is Permission.READ_USAGE
    assert policies[("GET", "/v1/costs")] is Permission.READ_USAGE
    assert policies[("GET", "/v1/ingest")] is Permission.READ_OPERATIONS
    assert len(policies) == 44
