"""Keys and read tokens through their life (made, used, expired, revoked), the rate limit, and
the audit log that records every change with who made it and what it changed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from meterline.brokers import Broker
from tests.factories import catalog_document
from tests.integration.harness import System, system_with_catalog

pytestmark = pytest.mark.integration
PROBLEM = "application/problem+json"


@pytest.fixture
def api(broker: Broker, tmp_path: Path) -> Iterator[System]:
    running = system_with_catalog(
        broker, tmp_path, catalog_document(), METERLINE_RATE_LIMIT_BURST="30", METERLINE_RATE_LIMIT_PER_S="1"
    )
    running.start_api()
    yield running
    running.stop_all()


def test_a_key_works_until_it_is_revoked_or_expires_and_its_secret_is_shown_once(api: System):
    anonymous = api.client(None).get("/v1/invoices")
    assert anonymous.status_code == 401 and anonymous.headers["content-type"] == PROBLEM
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert anonymous.json()["type"] == "urn:meterline:problem:unauthenticated"
    assert api.client("mlk_000000000000_guess").get("/v1/invoices").status_code == 401

    made = api.http.post("/v1/keys", json={"name": "north portal", "role": "partner", "party_id": "north"})
    assert made.status_code == 201
    north_key, key_id = made.json()["key"], made.json()["key_id"]
    listed = {k["key_id"]: k for k in api.http.get("/v1/keys").json()}
    assert listed[key_id]["prefix"] == f"mlk_{key_id}" and "key" not in listed[key_id]
    assert north_key.split("_", 2)[2] not in api.http.get("/v1/keys").text, "the secret is never shown again"

    north = api.client(north_key)
    assert north.get("/v1/customers/resold/usage").status_code == 200
    assert north.post("/v1/keys", json={"name": "x", "role": "admin"}).status_code == 403
    another_tenants = north.post("/v1/keys", json={"name": "x", "role": "customer", "party_id": "direct"})
    nobodys = north.post("/v1/keys", json={"name": "x", "role": "customer", "party_id": "no-such-party"})
    assert another_tenants.status_code == nobodys.status_code == 404, "another tenant's party is as if it did not exist"
    assert another_tenants.json()["detail"].replace("direct", "?") == nobodys.json()["detail"].replace(
        "no-such-party", "?"
    )
    resold = north.post("/v1/keys", json={"name": "resold app", "role": "customer", "party_id": "resold"})
    assert resold.status_code == 201, "a partner makes keys for its customers"

    revoked = api.http.delete(f"/v1/keys/{key_id}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert north.get("/v1/customers/resold/usage").status_code == 401
    assert api.client(resold.json()["key"]).get("/v1/customers/resold/usage").status_code == 200

    soon = datetime.now(UTC) + timedelta(seconds=2)
    short = api.http.post("/v1/keys", json={"name": "short", "role": "reader", "expires_at": soon.isoformat()})
    reader = api.client(short.json()["key"])
    assert reader.get("/v1/invoices").status_code == 200
    time.sleep(2.5)
    assert reader.get("/v1/invoices").status_code == 401


def test_a_read_token_reads_its_party_until_it_is_revoked(api: System):
    made = api.http.post("/v1/tokens", json={"party_id": "resold", "ttl_s": 600})
    assert made.status_code == 201
    token = api.client(made.json()["token"])
    assert token.get("/v1/customers/resold/usage").status_code == 200
    assert token.get("/v1/customers/direct/usage").status_code == 404
    assert token.get("/v1/keys").status_code == 403
    assert api.http.delete(f"/v1/tokens/{made.json()['token_id']}").json()["revoked_at"]
    assert token.get("/v1/customers/resold/usage").status_code == 401
    tampered = made.json()["token"][:-3] + ("AAA" if not made.json()["token"].endswith("AAA") else "BBB")
    assert api.client(tampered).get("/v1/customers/resold/usage").status_code == 401


def test_state_changes_take_json_only(api: System):
    document = api.http.get("/v1/catalog/customers/direct").json()["document"]
    form = api.http.put("/v1/catalog/customers/direct", content=str(document), headers={"content-type": "text/plain"})
    assert form.status_code == 415 and form.headers["content-type"] == PROBLEM
    assert api.http.put("/v1/catalog/customers/direct", json=document).status_code == 200


def test_every_change_and_every_refused_attempt_is_in_the_audit_log(api: System):
    made = api.http.post("/v1/keys", json={"name": "north", "role": "partner", "party_id": "north"}).json()
    north = api.client(made["key"])
    assert north.post("/v1/periods/2026-10/close").status_code == 403
    before = api.http.get("/v1/catalog/customers/resold").json()["document"]
    renamed = {**before, "name": "Resold AG"}
    assert north.put("/v1/catalog/customers/resold", json=renamed).status_code == 200
    api.http.delete(f"/v1/keys/{made['key_id']}")
    entries = api.http.get("/v1/audit").json()
    by_route = {(e["method"], e["route"], e["key_id"]): e for e in entries}

    created = by_route[("POST", "/v1/keys", "bootstrap")]
    assert created["status"] == 201 and created["after"]["role"] == "partner" and created["before"] is None
    assert made["key"] not in str(created), "the secret is not in the log"
    refused = by_route[("POST", "/v1/periods/{period}/close", made["key_id"])]
    assert (refused["status"], refused["role"], refused["party_id"]) == (403, "partner", "north")
    change = by_route[("PUT", "/v1/catalog/{section}/{entry_id}", made["key_id"])]
    assert change["path"] == "/v1/catalog/customers/resold"
    assert (change["before"]["name"], change["after"]["name"]) == ("Resold GmbH", "Resold AG")
    revocation = by_route[("DELETE", "/v1/keys/{key_id}", "bootstrap")]
    assert revocation["before"]["revoked_at"] is None and revocation["after"]["revoked_at"]
    assert not [e for e in entries if e["method"] == "GET"], "reads are not changes"
    assert north.get("/v1/audit").status_code == 401, "revoked"


def test_a_key_past_its_burst_is_told_when_to_come_back(api: System):
    key = api.http.post("/v1/keys", json={"name": "busy", "role": "customer", "party_id": "direct"}).json()["key"]
    busy = api.client(key)
    answers = [busy.get("/v1/customers/direct/invoices") for _ in range(40)]
    limited = [a for a in answers if a.status_code == 429]
    assert limited and all(a.status_code in (200, 429) for a in answers)
    assert int(limited[0].headers["retry-after"]) >= 1
    assert limited[0].json()["type"] == "urn:meterline:problem:rate-limited"
    assert api.http.get("/v1/invoices").status_code == 200, "another key is not slowed down"
    guesses = [api.client(f"mlk_{n:012x}_guess").get("/v1/invoices").status_code for n in range(40)]
    assert set(guesses) == {401, 429} and guesses[-1] == 429, "guessing keys is slowed too, per address"


def test_a_revoked_key_takes_its_tokens_and_a_deleted_customer_its_keys(api: System):
    """A leaked key minted 31-day read tokens that outlived its revocation, and a deleted
    customer's key kept reading while its partner could no longer list or revoke it."""
    resold = api.http.post("/v1/keys", json={"name": "app", "role": "customer", "party_id": "resold"}).json()
    token = api.client(resold["key"]).post("/v1/tokens", json={"party_id": "resold", "ttl_s": 2_678_400}).json()
    reader = api.client(token["token"])
    assert reader.get("/v1/customers/resold/usage").status_code == 200
    assert api.http.delete(f"/v1/keys/{resold['key_id']}").status_code == 200
    assert reader.get("/v1/customers/resold/usage").status_code == 401

    north = api.client(
        api.http.post("/v1/keys", json={"name": "n", "role": "partner", "party_id": "north"}).json()["key"]
    )
    customer_id = north.post("/v1/catalog/customers", json={"name": "Short-lived", "partner_id": "north"}).json()["id"]
    its_key = north.post("/v1/keys", json={"name": "c", "role": "customer", "party_id": customer_id}).json()["key"]
    its_token = api.client(its_key).post("/v1/tokens", json={"party_id": customer_id}).json()["token"]
    assert api.client(its_key).get(f"/v1/customers/{customer_id}/usage").status_code == 200
    assert north.delete(f"/v1/catalog/customers/{customer_id}").status_code == 200
    for credential in (its_key, its_token):
        assert api.client(credential).get(f"/v1/customers/{customer_id}/usage").status_code == 401

    # the provider gives the id to a customer of its own: what the deleted one held stays dead
    direct = {"id": customer_id, "name": "Taken over", "country": "FR"}
    assert api.http.put(f"/v1/catalog/customers/{customer_id}", json=direct).status_code == 200
    for credential in (its_key, its_token):
        assert api.client(credential).get(f"/v1/customers/{customer_id}/usage").status_code == 401
    assert north.get(f"/v1/catalog/customers/{customer_id}/versions").status_code == 404


def test_a_partner_sees_only_the_versions_of_a_customer_from_when_it_sold_it(api: System):
    """The provider sold 'moving' at a 33 % discount, then handed it to north: north sees its own
    version, not the provider's terms."""
    north = api.client(
        api.http.post("/v1/keys", json={"name": "n", "role": "partner", "party_id": "north"}).json()["key"]
    )
    direct = {"id": "moving", "name": "Moving Co", "country": "FR", "discount_percent": "33"}
    assert api.http.put("/v1/catalog/customers/moving", json=direct).status_code == 200
    resold = {**direct, "partner_id": "north", "discount_percent": "5"}
    assert api.http.put("/v1/catalog/customers/moving", json=resold).status_code == 200

    versions = north.get("/v1/catalog/customers/moving/versions").json()
    assert [v["document"]["discount_percent"] for v in versions] == ["5"]
    assert len(api.http.get("/v1/catalog/customers/moving/versions").json()) == 2
