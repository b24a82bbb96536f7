"""The dashboard routes of a running meterline: cost over time, month to date and ingest, which
Grafana's panels read (``test_grafana`` checks each panel's figures)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from billing.money import round_money
from tests.integration.harness import System, wait_for
from tests.integration.test_exactly_once import START, api_amounts, events_of, ticks

pytestmark = pytest.mark.integration

CUSTOMERS = ["cust-00001", "cust-00002", "cust-00003", "cust-00004", "cust-00005", "cust-00006"]
NOVEMBER = {"from": "2026-11-01T00:00:00Z", "to": "2026-11-03T00:00:00Z"}


@pytest.fixture
def running(system: System) -> System:
    system.start_all()
    batches = ticks(0, 3)
    for batch in batches:
        system.publish(batch)
    stored = len(events_of(batches))
    wait_for(lambda: system.metric('meterline_sink_rows_written_total{table="usage_events"}') >= stored, 90)
    return system


def test_costs_add_up_to_each_customers_usage_and_refuse_bad_ranges(running: System):
    per_customer = {c: a for c, a in api_amounts(running, CUSTOMERS).items() if a}
    body = running.http.get("/v1/costs", params={**NOVEMBER, "granularity": "hour", "group_by": "customer"}).json()
    to_cents = {c: round_money(a, "EUR") for c, a in per_customer.items()}
    assert {t["group"]: Decimal(t["amount"]) for t in body["totals"]} == to_cents, "money to the cent"
    top = running.http.get("/v1/costs", params={**NOVEMBER, "top": 2}).json()["totals"]
    assert [t["group"] for t in top][-1] == "(other)" and len(top) == 3
    others = sum(a for c, a in per_customer.items() if c not in {t["group"] for t in top})
    assert Decimal(top[-1]["amount"]) == round_money(others, "EUR"), "the rest summed exactly, then rounded"
    for bad in (
        {"from": "2026-11-03T00:00:00Z", "to": "2026-11-01T00:00:00Z"},
        {"from": "2026-11-01T00:00:00"},
        {"granularity": "week"},
        {"group_by": "colour"},
        {"top": "0"},
        {"from": "2020-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z", "granularity": "hour"},
    ):
        answer = running.http.get("/v1/costs", params=bad)
        assert answer.status_code == 422, (bad, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
    assert running.http.get("/v1/costs/month-to-date").status_code == 200
    ingest = running.http.get("/v1/ingest").json()
    assert ingest["last_stored"] and Decimal(ingest["events_per_s"]) > 0


def test_ingest_is_for_provider_readers_and_costs_for_every_tenant(running: System):
    partner = running.http.post("/v1/keys", json={"name": "p", "role": "partner", "party_id": "northwind"}).json()
    reader = running.http.post("/v1/keys", json={"name": "r", "role": "reader"}).json()
    assert running.client(None).get("/v1/ingest").status_code == 401
    assert running.client(partner["key"]).get("/v1/ingest").status_code == 403
    assert running.client(reader["key"]).get("/v1/ingest").status_code == 200
    since = (START - timedelta(days=1)).isoformat()
    assert running.client(partner["key"]).get("/v1/costs", params={"from": since}).status_code == 200


def test_usage_windows_follow_the_same_bucket_rule_as_costs(running: System):
    """1970 to 2298 by the hour is 2.9 million hours: refused like the same cost query, before any read."""
    centuries = {"from": "1970-01-01T00:00:00Z", "to": "2298-01-01T00:00:00Z"}
    for path, params in (
        ("/v1/customers/cust-00001/usage", {**centuries, "granularity": "hour"}),
        ("/v1/customers/cust-00001/usage.csv", centuries),
        ("/v1/costs", {**centuries, "granularity": "hour"}),
    ):
        answer = running.http.get(path, params=params)
        assert answer.status_code == 422, (path, answer.text)
        assert "at most 10000 hours" in answer.json()["detail"]
    by_month = running.http.get("/v1/customers/cust-00001/usage", params={**centuries, "granularity": "month"})
    assert by_month.status_code == 200, "3,936 months are within the rule"
