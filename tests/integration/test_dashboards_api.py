"""The dashboard routes of a running meterline: cost over time, month to date, ingest, and the
read-only ClickHouse interface that Grafana reads on the embedded default."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import clickhouse_connect
import pytest

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
    assert {t["group"]: Decimal(t["amount"]) for t in body["totals"]} == per_customer
    top = running.http.get("/v1/costs", params={**NOVEMBER, "top": 2}).json()["totals"]
    assert [t["group"] for t in top][-1] == "(other)" and len(top) == 3
    assert sum(Decimal(t["amount"]) for t in top) == sum(per_customer.values())
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


def test_grafana_reads_the_rollups_through_the_clickhouse_interface(running: System):
    key = running.env["METERLINE_ADMIN_KEY"]
    client = clickhouse_connect.get_client(
        host="127.0.0.1", port=running.api_port, username="grafana", password=key, proxy_path="/clickhouse/"
    )
    sql = (
        "SELECT customer_id, sum(amount) FROM meterline.usage_by_hour FINAL "
        "WHERE hour >= toDateTime({start:DateTime}) GROUP BY customer_id ORDER BY customer_id"
    )
    rows = client.query(sql, parameters={"start": datetime(2026, 11, 1, tzinfo=UTC)}).result_rows
    per_customer = {c: a for c, a in api_amounts(running, CUSTOMERS).items() if a}
    assert dict(rows) == per_customer
    basic = base64.b64encode(f"grafana:{key}".encode()).decode()
    as_json = running.http.post(
        "/clickhouse/",
        content=b"SELECT count() AS hours FROM meterline.usage_by_hour FORMAT JSON",
        headers={"Authorization": f"Basic {basic}", "Content-Type": "text/plain"},
    )
    assert as_json.status_code == 200 and as_json.json()["data"][0]["hours"] != "0"


REFUSED = [
    "SELECT * FROM meterline.api_keys",
    "SELECT * FROM meterline.usage_events",
    "SELECT * FROM url('http://127.0.0.1:1/', CSV, 'a String')",
    "SELECT file('/etc/passwd')",
    "INSERT INTO meterline.usage_by_day SELECT * FROM meterline.usage_by_day",
    "SELECT 1; DROP TABLE meterline.usage_by_day",
    "SELECT * FROM system.tables",
    "WITH k AS (SELECT * FROM meterline.api_keys) SELECT * FROM k",
    "SELECT sleepEachRow(1) FROM meterline.usage_by_hour",
    "SELECT count() FROM meterline.usage_by_hour SETTINGS max_execution_time = 0, max_memory_usage = 0",
    "SELECT * FROM (SELECT * FROM meterline.usage_by_day SETTINGS readonly = 0)",
]


def test_the_clickhouse_interface_refuses_anything_but_reading_the_rollups(system: System):
    system.start_api()
    wait_for(lambda: system.http.get("/readyz").status_code == 200, 60)
    for query in REFUSED:
        answer = system.http.post("/clickhouse/", content=query.encode(), headers={"Content-Type": "text/plain"})
        assert answer.status_code in (400, 403), (query, answer.text)
        assert answer.headers["X-ClickHouse-Exception-Code"] in ("62", "497"), query
    assert system.http.get("/clickhouse/", params={"query": "SELECT count() FROM meterline.usage_by_day"}).text == "0\n"


def test_only_provider_readers_reach_the_clickhouse_interface(running: System):
    partner = running.http.post("/v1/keys", json={"name": "p", "role": "partner", "party_id": "northwind"}).json()
    query = {"query": "SELECT 1"}
    assert running.client(None).get("/clickhouse/", params=query).status_code == 401
    assert running.client(partner["key"]).get("/clickhouse/", params=query).status_code == 403
    reader = running.http.post("/v1/keys", json={"name": "r", "role": "reader"}).json()
    assert running.client(reader["key"]).get("/clickhouse/", params=query).text == "1\n"
    assert running.client(None).get("/clickhouse/ping").text == "Ok.\n"
    since = (START - timedelta(days=1)).isoformat()
    assert running.client(partner["key"]).get("/v1/costs", params={"from": since}).status_code == 200
