"""The catalog through the API: versioned changes, refused contradictions, prices that reach rating."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from billing.adapters.catalog_file import load_catalog
from billing.adapters.kafka_catalog import CatalogFeed, CatalogPublisher
from billing.catalog_entries import entries_of
from meterline.brokers import Broker, TansuBroker, ensure_topics
from meterline.settings import Settings
from tests.factories import FROM, catalog_document, vm_sample
from tests.integration.harness import System, free_port, system_with_catalog, wait_for
from tests.integration.test_invoicing import push

pytestmark = pytest.mark.integration

BEFORE = datetime(2026, 10, 5, 10, 0, tzinfo=UTC)
AFTER = datetime(2026, 10, 12, 10, 0, tzinfo=UTC)
UPDATES = "meterline_pipeline_catalog_updates_total"


def vcpu_amounts(system: System) -> list[str]:
    rows = system.usage("direct", granularity="day")["rows"]
    return [row["amount"] for row in rows if row["meter"] == "vcpu_hours"]


def test_a_price_change_reaches_rating_from_its_date_and_history_is_kept(billing: System):
    """From 10 October vCPU costs 0.05 instead of 0.025: a 5-minute, 2-vCPU sample is 1/6 vCPU-h,
    0.0041666... before and 0.0083333... after."""
    price_list = billing.http.get("/v1/catalog/price_lists/acme", timeout=30).json()
    assert price_list["version"] == 1
    document = price_list["document"]
    document["plans"].append(
        {"meter": "vcpu_hours", "model": "per_unit", "unit_price": "0.05", "effective_from": "2026-10-10T00:00:00Z"}
    )
    wait_for(lambda: billing.worker_metric("meterline_pipeline_catalog_loaded"), what="the worker's catalog")
    updates_before = billing.worker_metric(UPDATES)
    changed = billing.http.put("/v1/catalog/price_lists/acme", json=document, timeout=30)
    assert changed.status_code == 200 and changed.json()["version"] == 2
    wait_for(lambda: billing.worker_metric(UPDATES) > updates_before, what="the worker to take the new price")

    push(
        billing, [vm_sample("vm-1", customer_id="direct", at=BEFORE), vm_sample("vm-1", customer_id="direct", at=AFTER)]
    )
    amounts = wait_for(lambda: len(a := vcpu_amounts(billing)) == 2 and a, what="both samples rated")
    assert amounts == ["0.004166666667", "0.008333333333"]

    versions = billing.http.get("/v1/catalog/price_lists/acme/versions", timeout=30).json()
    assert [v["version"] for v in versions] == [1, 2]
    before_any = billing.http.get("/v1/catalog", params={"as_of": "1970-01-01T00:00:00Z"}, timeout=30)
    assert before_any.status_code == 404 and "no catalog was recorded" in before_any.json()["detail"]
    then = billing.http.get("/v1/catalog", params={"as_of": versions[0]["recorded_at"]}, timeout=30).json()
    (acme,) = [p for p in then["price_lists"] if p["seller_id"] == "acme"]
    assert len(acme["plans"]) == len(document["plans"]) - 1


def test_usage_sent_right_after_a_catalog_change_is_rated_with_it(billing: System):
    """No wait for the workers: usage accepted after the API answered a change carries the
    catalog's revision, and a worker rates it with that revision. vCPU costs 0.05 from 10
    October; a 5-minute, 2-vCPU sample (1/6 vCPU-h) after it is 0.008333333333 for 'direct' and
    for a customer created a moment before its first sample (dead-lettered as unknown before)."""
    wait_for(lambda: billing.worker_metric("meterline_pipeline_catalog_loaded"), what="the worker's catalog")
    document = billing.http.get("/v1/catalog/price_lists/acme", timeout=30).json()["document"]
    document["plans"].append(
        {"meter": "vcpu_hours", "model": "per_unit", "unit_price": "0.05", "effective_from": "2026-10-10T00:00:00Z"}
    )
    assert billing.http.put("/v1/catalog/price_lists/acme", json=document, timeout=30).status_code == 200
    push(billing, [vm_sample("vm-1", customer_id="direct", at=AFTER)])
    created = billing.http.post("/v1/catalog/customers", json={"name": "Just Signed", "country": "FR"}, timeout=30)
    newcomer = created.json()["id"]
    push(billing, [vm_sample("vm-new", customer_id=newcomer, at=AFTER)])

    assert wait_for(lambda: vcpu_amounts(billing), what="the sample rated") == ["0.008333333333"]
    rows = wait_for(lambda: billing.usage(newcomer, granularity="day")["rows"], what="the newcomer's sample rated")
    assert [row["amount"] for row in rows if row["meter"] == "vcpu_hours"] == ["0.008333333333"]


def test_catalog_changes_that_contradict_the_catalog_are_refused_with_the_reason(billing: System):
    orphan = {"id": "lost", "name": "Lost Ltd", "partner_id": "nobody"}
    refused = billing.http.put("/v1/catalog/customers/lost", json=orphan, timeout=30)
    assert refused.status_code == 422 and "unknown partner nobody" in refused.json()["detail"]
    mismatched = billing.http.put("/v1/catalog/customers/x", json={"id": "y", "name": "Y"}, timeout=30)
    assert mismatched.status_code == 422
    bad_plan = {"seller_id": "acme", "plans": [{"meter": "vcpu_hours", "model": "per_unit", "effective_from": FROM}]}
    assert billing.http.put("/v1/catalog/price_lists/acme", json=bad_plan, timeout=30).status_code == 422
    in_use = billing.http.delete("/v1/catalog/customers/direct", timeout=30)
    assert in_use.status_code == 422 and "unknown customer direct" in in_use.json()["detail"]
    assert billing.http.get("/v1/catalog/customers/ghost", timeout=30).status_code == 404
    added = billing.http.put("/v1/catalog/customers/newco", json={"id": "newco", "name": "NewCo"}, timeout=30)
    assert added.status_code == 200
    customers = {c["id"] for c in billing.http.get("/v1/catalog", timeout=30).json()["customers"]}
    assert customers == {"direct", "resold", "newco"}


def test_a_partner_adds_customers_under_new_ids_and_names_nothing_it_does_not_see(billing: System):
    """A partner's PUT of an id it does not see answers the same whether the id is free, held by
    another tenant, or has usage no one was assigned (which stays the provider's); it creates
    under ids meterline makes."""
    north = billing.client(
        billing.http.post("/v1/keys", json={"name": "n", "role": "partner", "party_id": "north"}).json()["key"]
    )
    push(billing, [vm_sample("vm-9", customer_id="unassigned", at=BEFORE)])
    wait_for(lambda: billing.usage("unassigned")["rows"], what="usage of a customer no one holds")
    claims = {
        customer: north.put(
            f"/v1/catalog/customers/{customer}", json={"id": customer, "name": "Mine", "partner_id": "north"}
        )
        for customer in ("direct", "brand-new", "unassigned")
    }
    assert {answer.status_code for answer in claims.values()} == {404}
    assert len({answer.json()["detail"].replace(customer, "?") for customer, answer in claims.items()}) == 1
    assert north.get("/v1/customers/unassigned/usage").status_code == 404, "still the provider's"

    with_id = north.post("/v1/catalog/customers", json={"id": "chosen", "name": "Mine", "partner_id": "north"})
    assert with_id.status_code == 422 and "leave 'id' out" in with_id.json()["detail"]
    elsewhere = north.post("/v1/catalog/customers", json={"name": "Theirs", "partner_id": "nobody"})
    assert elsewhere.status_code == 404
    unnamed = north.post("/v1/catalog/customers", json={"name": "Whose"})
    assert unnamed.status_code == 422 and "names that partner as its partner_id" in unnamed.json()["detail"]
    made = north.post("/v1/catalog/customers", json={"name": "New Client", "partner_id": "north"})
    assert made.status_code == 201, made.text
    new_id = made.json()["id"]
    assert new_id.startswith("c-") and len(new_id) == 18
    assert north.get(f"/v1/customers/{new_id}/usage").json()["rows"] == []
    subscription = {"customer_id": new_id, "product_id": "support", "start": "2026-10-01"}
    assert north.post("/v1/catalog/subscriptions", json=subscription).status_code == 201
    renamed = north.put(f"/v1/catalog/customers/{new_id}", json={**made.json()["document"], "name": "Renamed"})
    assert renamed.status_code == 200 and renamed.json()["version"] == 2


def test_a_price_change_may_not_reach_into_a_month_already_issued(billing: System):
    """Stored amounts are rated once and issued invoices never change: a plan dated inside
    issued October would re-price it. November on is open."""
    push(billing, [vm_sample("vm-1", customer_id="direct", at=BEFORE)])
    wait_for(lambda: billing.usage("direct")["rows"], what="October's usage")
    assert billing.http.post("/v1/periods/2026-10/close", timeout=60).status_code == 200
    assert billing.http.post("/v1/periods/2026-10/issue", timeout=60).status_code == 200
    document = billing.http.get("/v1/catalog/price_lists/acme", timeout=30).json()["document"]

    def with_plan_from(effective_from: str) -> dict[str, object]:
        plan = {"meter": "vcpu_hours", "model": "per_unit", "unit_price": "9.99", "effective_from": effective_from}
        return {**document, "plans": [*document["plans"], plan]}

    backdated = billing.http.put("/v1/catalog/price_lists/acme", json=with_plan_from("2026-10-20T00:00:00Z"))
    assert backdated.status_code == 409, backdated.text
    assert backdated.json()["type"] == "urn:meterline:problem:period-issued"
    assert "2026-11-01" in backdated.json()["detail"]
    assert billing.http.get("/v1/catalog/price_lists/acme").json()["version"] == 1, "nothing was written"
    dated_after = billing.http.put("/v1/catalog/price_lists/acme", json=with_plan_from("2026-11-01T00:00:00Z"))
    assert dated_after.status_code == 200


def test_oversized_entries_and_bodies_are_refused_before_they_reach_the_broker(billing: System):
    """A 2 MB customer name was stored, then refused by the broker: 500, and the API, which
    publishes every entry when it starts, never started again."""
    document = billing.http.get("/v1/catalog/customers/direct").json()["document"]
    body = billing.http.put("/v1/catalog/customers/direct", json={**document, "name": "x" * 2_000_000})
    assert body.status_code == 413 and body.json()["type"] == "urn:meterline:problem:payload-too-large"
    assert billing.http.put("/v1/catalog/customers/direct", json={**document, "name": "x" * 501}).status_code == 422
    plans = [
        {
            "meter": "vcpu_hours",
            "model": "per_unit",
            "unit_price": "0.02",
            "effective_from": f"2027-01-01T00:{m:02d}:{s:02d}Z",
        }
        for m in range(60)
        for s in range(60)
    ]  # 3,600 versions: about 400 KB, under the 1 MiB of a body
    entry = billing.http.put("/v1/catalog/price_lists/acme", json={"seller_id": "acme", "plans": plans})
    assert entry.status_code == 422 and "more than an entry holds" in entry.json()["detail"]
    assert billing.http.get("/v1/catalog/customers/direct").json()["version"] == 1, "nothing stored"
    assert billing.http.get("/readyz").status_code == 200


def test_a_change_the_broker_does_not_take_is_kept_and_sent_when_it_is_back(broker: Broker, tmp_path: Path):
    system = system_with_catalog(broker, tmp_path, catalog_document())
    try:
        system.start_api()
        document = system.http.get("/v1/catalog/customers/direct").json()["document"]
        broker.stop(kill=True)
        away = system.http.put("/v1/catalog/customers/direct", json={**document, "name": "Renamed SAS"})
        assert away.status_code == 503 and "is stored" in away.json()["detail"], away.text
        assert system.http.get("/v1/catalog/customers/direct").json()["document"]["name"] == "Renamed SAS"
        broker.start()
        ensure_topics(system.settings)

        def published() -> bool:
            entries = [json.loads(m) for m in system.topic_messages(system.settings.topics.catalog)]
            return any(e["id"] == "direct" and e["document"]["name"] == "Renamed SAS" for e in entries)

        wait_for(published, 60, "the change sent to the catalog topic")
    finally:
        system.stop_all()
        if broker.exited:
            broker.start()


def test_a_worker_started_before_its_broker_waits_for_the_catalog(tmp_path: Path):
    """A worker (re)started while its broker is away waits for it, as for the catalog: it used to
    exit at once (rc 1) when its first metadata request went unanswered."""
    late = TansuBroker(free_port(), tmp_path / "broker.log")
    settings = Settings(kafka_bootstrap=late.bootstrap, data_dir=tmp_path)
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(CatalogFeed(settings).wait_for_catalog, 60)
        time.sleep(3)
        assert not waiting.done(), "the feed waits for its broker"
        late.start()
        try:
            ensure_topics(settings)
            catalog = load_catalog(settings.catalog)
            CatalogPublisher(settings).publish(entries_of(catalog))
            assert waiting.result(timeout=60).customers == catalog.customers
        finally:
            late.stop(kill=True)
