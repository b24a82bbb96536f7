"""The OpenAPI document tells integrators the exact shape of what the API returns."""

from __future__ import annotations

from api.app import create_app
from meterline.settings import Settings


def test_usage_and_push_responses_are_described_with_money_as_strings():
    document = create_app(Settings(), run_sink=False).openapi()
    schemas = document["components"]["schemas"]
    assert {"UsageReport", "UsageRow", "EventsOutcome", "RejectedEvent"} <= set(schemas)
    assert schemas["UsageRow"]["properties"]["amount"]["type"] == "string"
    usage = document["paths"]["/v1/customers/{customer_id}/usage"]["get"]
    assert usage["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/UsageReport")
    assert {"from", "to", "granularity", "group_by"} <= {p["name"] for p in usage["parameters"]}


def test_every_operation_has_an_id_of_its_own():
    """Client generators name a method per operation id: two alike make one of them unreachable."""
    document = create_app(Settings(), run_sink=False).openapi()
    ids = [operation["operationId"] for path in document["paths"].values() for operation in path.values()]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
