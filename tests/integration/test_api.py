"""The API as a billing system or a service sees it, against the real broker and engine."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import orjson
import pytest
from confluent_kafka import Producer

from billing.money import round_money
from schemas.events import encode_batch
from tests.factories import vm_sample, xaas_usage
from tests.integration.harness import System, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def running(system: System) -> System:
    return system.start_all()


def test_pushed_events_are_accepted_or_refused_one_by_one(running: System):
    good, bad = xaas_usage(quantity="10"), vm_sample("vm-bad", vcpu=-4)
    response = running.http.post("/v1/events", content=encode_batch([good, bad]), timeout=30)
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == [good["id"]]
    assert body["rejected"] == [{"index": 1, "id": bad["id"], "reason": "data.vcpu: Expected `int` >= 0"}]
    usage = wait_for(lambda: running.usage("cust-1")["rows"], what="the pushed usage")
    # 10 GB restored x 0.010 (the demo catalog's restore_gb, a counter) = 0.10
    assert [(r["meter"], r["quantity"], r["amount"]) for r in usage] == [
        ("xaas_units", "10.000000000000", "0.100000000000")
    ]


def test_bad_bodies_get_a_4xx_with_a_reason(running: System):
    not_json = running.http.post("/v1/events", content=b"{oops", timeout=10)
    assert not_json.status_code == 400
    assert "not valid JSON" in not_json.json()["detail"]
    none_valid = running.http.post("/v1/events", content=orjson.dumps([{"type": "vm.sample"}]), timeout=10)
    assert none_valid.status_code == 422
    assert none_valid.json()["accepted"] == []
    empty = running.http.post("/v1/events", content=b"[]", timeout=10)
    assert empty.status_code == 400
    backwards = running.http.get(
        "/v1/customers/cust-1/usage",
        params={"from": "2026-11-02T00:00:00Z", "to": "2026-11-01T00:00:00Z"},
        timeout=10,
    )
    assert backwards.status_code == 422
    assert "'from' must be before 'to'" in backwards.json()["detail"]
    naive = running.http.get("/v1/customers/cust-1/usage", params={"from": "2026-11-01T00:00:00"}, timeout=10)
    assert naive.status_code == 422
    unknown = running.http.get("/v1/customers/cust-1/usage", params={"granularity": "week"}, timeout=10)
    assert unknown.status_code == 422


def test_hostile_input_gets_a_4xx_with_a_reason_and_nothing_of_it_is_stored(running: System):
    """Each of these answered 500, read a 20 MB body whole, or answered a 7 MB error list."""
    events = "/v1/events"
    deep = running.http.post(events, content=b"[" * 5000 + b"]" * 5000, timeout=30)
    assert deep.status_code == 400 and "deeper" in deep.json()["detail"]
    huge = running.http.post(events, content=b"[" + b" " * (20 * 1024 * 1024) + b"]", timeout=60)
    assert huge.status_code == 413
    many = running.http.post(events, content=b"[" + b",".join([b"{}"] * 100_000) + b"]", timeout=60)
    assert many.status_code == 422 and len(many.content) < 20_000
    assert (len(many.json()["rejected"]), many.json()["rejected_count"]) == (100, 100_000)
    far = [
        vm_sample("vm-1900", at=datetime(1900, 1, 1, tzinfo=UTC)),
        vm_sample("vm-2300", at=datetime(2300, 1, 1, tzinfo=UTC)),
    ]
    absurd = [vm_sample("vm-absurd", net_tx_bytes=10**30), xaas_usage(quantity="999999999999999999")]
    refused = running.http.post(events, content=encode_batch(far + absurd), timeout=30)
    assert refused.status_code == 422 and refused.json()["rejected_count"] == 4
    assert [r["reason"].split(":")[0] for r in refused.json()["rejected"]] == [
        "time",
        "time",
        "data.net_tx_bytes",
        "data.quantity",
    ]
    crlf = running.http.get("/v1/customers/cust-1%0D%0AX-Evil:%201/usage.csv", timeout=10)
    assert crlf.status_code == 422
    quoted = running.http.get("/v1/invoices/x%22%3B%20filename%3D%22evil.html/pdf", timeout=10)
    assert quoted.status_code == 422
    far_page = running.http.get("/v1/invoices/2026-10.acme.c/lines/1/events", params={"offset": 2**40}, timeout=10)
    assert far_page.status_code == 422
    not_utf8 = running.http.post(events, content=encode_batch([vm_sample("vm-\u00e9")]).replace(b"\xc3\xa9", b"\xe9"))
    assert not_utf8.status_code == 400 and "not UTF-8" in not_utf8.json()["detail"], "it answered 500"
    named_badly = [
        vm_sample("vm-crlf", customer_id="cust-1\r\n"),
        vm_sample("vm-nul", customer_id="cust-1\u0000"),
        vm_sample("vm-up", customer_id="../cust-1"),
        vm_sample("vm-wide", customer_id="cust-\uff11"),
    ]
    refused = running.http.post(events, content=encode_batch(named_badly), timeout=30)
    assert refused.status_code == 422 and refused.json()["rejected_count"] == 4, "each was stored and rated"
    assert {r["reason"].split(":")[0] for r in refused.json()["rejected"]} == {"data.customer_id"}
    assert running.http.post(events, content=encode_batch([vm_sample("vm-ok")]), timeout=30).status_code == 202
    rows = wait_for(lambda: running.usage("cust-1")["rows"], what="the one valid sample")
    assert sum(row["rated_rows"] for row in rows) == 4, "the valid sample's four meters, and nothing refused"


def test_events_that_bypass_the_api_and_break_the_contract_go_to_dead_letter(running: System):
    topics = running.settings.topics
    bad = vm_sample("vm-x")
    bad["data"]["ram_mb"] = "lots"
    producer = Producer({"bootstrap.servers": running.broker.bootstrap})
    producer.produce(topics.events, encode_batch([bad, vm_sample("vm-ok")]), key=b"hv-1")
    producer.produce(topics.events, b"not json at all", key=b"hv-1")
    producer.flush(10)
    letters = wait_for(lambda: len(m := running.topic_messages(topics.dead_letter)) == 2 and m, what="dead letters")
    records = [orjson.loads(letter) for letter in letters]
    assert {r["reason"] for r in records} >= {"data.ram_mb: Expected `int`, got `str`"}
    assert any("not valid JSON" in r["reason"] and r["event"] == "not json at all" for r in records)
    wait_for(lambda: running.usage("cust-1")["rows"], what="the valid event of the batch")

    # the same (source, id) again for another customer, in a later batch: a conflict, refused
    ok = vm_sample("vm-ok")
    conflicting = {**ok, "data": {**ok["data"], "customer_id": "cust-2"}}
    assert running.http.post("/v1/events", content=encode_batch([conflicting]), timeout=30).status_code == 202

    def stored_letters() -> list[dict] | None:
        letters = running.http.get("/v1/dead-letters", timeout=10).json()
        return letters if len(letters) == 3 else None

    stored = wait_for(stored_letters, what="the three refusals stored with their reason")
    by_reason = {letter["reason"].split(":")[0]: letter for letter in stored}
    assert by_reason["conflict"]["event"]["data"]["customer_id"] == "cust-2"
    assert by_reason["data.ram_mb"]["source"] == bad["source"]
    assert any("not valid JSON" in reason for reason in by_reason)
    assert not running.usage("cust-2")["rows"], "the conflicting copy is not billed to anyone"


def test_csv_export_has_hourly_rows_per_resource_adding_up_to_the_json(running: System):
    events = [vm_sample(f"vm-{n}") for n in range(3)] + [xaas_usage()]
    assert running.http.post("/v1/events", content=encode_batch(events), timeout=30).status_code == 202
    body = wait_for(lambda: (u := running.usage("cust-1"))["rows"] and len(u["rows"]) == 5 and u, what="usage")
    response = running.http.get(
        "/v1/customers/cust-1/usage.csv",
        params={"from": "2026-11-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"},
        timeout=30,
    )
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert {r["resource_id"] for r in rows} == {"vm-0", "vm-1", "vm-2", "bk-1"}
    assert {r["hour"] for r in rows} == {"2026-11-02T09:00:00Z"}, "samples ending at 10:00 belong to 09:00-10:00"
    # every row is exact to 12 places, each rounded once: the rows add up to the total within half
    # a 12th place each, and to the cent exactly
    csv_total, total = sum(Decimal(r["amount"]) for r in rows), Decimal(body["totals_exact"]["EUR"])
    assert abs(csv_total - total) <= len(rows) * Decimal("0.5e-12")
    assert round_money(csv_total, "EUR") == Decimal(body["totals"]["EUR"])

    november = {"from": "2026-11-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"}
    by_resource = {**november, "granularity": "hour", "group_by": "resource", "limit": "2"}
    first = running.usage("cust-1", **by_resource)
    second = running.usage("cust-1", **by_resource, after=first["next_after"])
    assert [{r["resource_id"] for r in page["rows"]} for page in (first, second)] == [
        {"bk-1", "vm-0"},
        {"vm-1", "vm-2"},
    ]
    assert (first["next_after"], second["next_after"]) == ("vm-0", None)
    whole = running.usage("cust-1", **november, granularity="hour", group_by="resource")
    assert first["rows"] + second["rows"] == whole["rows"], "pages of resources partition the rows"
    paged = sum(Decimal(page["totals_exact"]["EUR"]) for page in (first, second))
    assert paged == Decimal(whole["totals_exact"]["EUR"]) and whole["next_after"] is None
    vcpu = running.usage("cust-1", **by_resource, meter="vcpu_hours")
    pair = {"vm-0", "vm-1"}  # the first two with vCPU usage: bk-1, a backup, has none
    assert {r["resource_id"] for r in vcpu["rows"]} == pair and vcpu["next_after"] == "vm-1"
    assert vcpu["rows"] == [r for r in whole["rows"] if r["meter"] == "vcpu_hours" and r["resource_id"] in pair]
    for wrong in (
        {"meter": "vcpu_hours; DROP TABLE x"},
        {"group_by": "meter", "limit": "2"},
        {"group_by": "resource", "after": "vm-0"},
        {"limit": "0"},
    ):
        response = running.http.get("/v1/customers/cust-1/usage", params={"group_by": "resource", **wrong})
        assert response.status_code in (400, 422) and response.json()["detail"], response.text


def test_health_and_the_metrics_of_a_stored_event(running: System):
    """Declared metrics show at import with no sample: these must have counted the event."""
    assert running.http.get("/healthz", timeout=5).json() == {"status": "ok"}
    flushes = running.metric("meterline_sink_flush_seconds_count")
    written = running.metric('meterline_sink_rows_written_total{table="usage_events"}')
    event = vm_sample("vm-metrics")
    assert running.http.post("/v1/events", content=encode_batch([event]), timeout=30).status_code == 202
    wait_for(lambda: running.usage("cust-1")["rows"], 60, "the event stored")
    assert running.metric('meterline_sink_rows_written_total{table="usage_events"}') == written + 1
    assert running.metric("meterline_sink_flush_seconds_count") > flushes
    assert running.metric("meterline_freshness_seconds_count") >= 1
    assert 'meterline_sink_consumer_lag_messages{topic="' in running.http.get("/metrics", timeout=5).text


def test_the_worker_reports_its_lag_on_each_partition_it_reads(running: System):
    """Once every event is rated, no partition the worker read from has a message left."""
    events = [vm_sample(f"vm-lag-{n}") for n in range(8)]  # keyed by resource: several partitions
    response = running.http.post("/v1/events", content=encode_batch(events), timeout=30)
    assert response.status_code == 202
    rows = lambda: running.usage("cust-1", group_by="resource")["rows"]  # noqa: E731
    wait_for(lambda: len({row["resource_id"] for row in rows()}) == len(events), 60, "the events to be rated")
    url = f"http://127.0.0.1:{running.env['METERLINE_WORKER_METRICS_PORT']}/metrics"
    prefix = 'meterline_pipeline_consumer_lag_messages{partition="'

    def lag_by_partition() -> dict[str, float]:
        lines = httpx.get(url, timeout=10).text.splitlines()
        return {
            line[len(prefix) :].split('"')[0]: float(line.rsplit(" ", 1)[1])
            for line in lines
            if line.startswith(prefix)
        }

    # the gauge is refreshed every 2 s, so it may still show the last moment before the events were read
    lags = wait_for(lambda: (lag := lag_by_partition()) and set(lag.values()) == {0.0} and lag, 30, "no lag left")
    assert set(lags) <= {str(p) for p in range(running.settings.topics.partitions)}
