"""Credit alerts end to end: a rule fires once per crossing, to a Kafka topic and to a webhook
receiver that verifies signatures with the ``standardwebhooks`` package (as a real one would),
fails at first, and rejects a replayed message; a pre-pay customer out of credit is suspended
and a top-up lifts it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from meterline.brokers import Broker
from tests.integration.harness import System, free_port, system_with_catalog, wait_for
from tests.integration.test_exactly_once import events_of, ticks
from tests.oracle import expected_amounts, to_cent

pytestmark = pytest.mark.integration

CUSTOMER = "cust-00001"


class Receiver:
    """An endpoint as a customer's system would run it: the first ``failures`` requests answer
    500, then each verified message is processed once; a replayed id is refused (409)."""

    def __init__(self, failures: int) -> None:
        self.secret = ""
        self.failures_left = failures
        self.processed: list[dict[str, Any]] = []
        self.refused: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the standard library's name
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                status = receiver.handle(body, dict(self.headers))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.lock = threading.Lock()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def handle(self, body: bytes, headers: dict[str, str]) -> int:
        with self.lock:
            if self.failures_left > 0:
                self.failures_left -= 1
                return 500
            try:
                message = Webhook(self.secret).verify(body, headers)
            except WebhookVerificationError as error:
                self.refused.append(f"signature: {error}")
                return 400
            if any(seen["id"] == message["id"] for seen in self.processed):
                self.refused.append(f"replay: {message['id']}")
                return 409
            self.processed.append(message)
            return 204


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver(failures=2)
    yield running
    running.server.shutdown()


def prepay_catalog() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(Path("billing/catalog.yaml").read_text())
    for customer in document["customers"]:
        if customer["id"] == CUSTOMER:
            customer["billing"] = "prepay"
    return document


def test_an_alert_fires_once_per_crossing_and_a_top_up_lifts_a_suspension(broker: Broker, tmp_path, receiver: Receiver):
    system = system_with_catalog(
        broker,
        tmp_path,
        prepay_catalog(),
        METERLINE_CREDIT_SETTLE_INTERVAL_S="0.5",
        METERLINE_WEBHOOK_ALLOWED_HOSTS="127.0.0.1:*",
    )
    try:
        system.start_all()
        http = system.http
        batches = ticks(0, 4)
        cost = expected_amounts(events_of(batches))[CUSTOMER]
        half = to_cent(cost / 2)  # the usage burns it all, and leaves the rest not covered
        assert half > 0

        made = http.post("/v1/webhook-endpoints", json={"url": f"http://127.0.0.1:{receiver.port}/hook"})
        assert made.status_code == 201, made.text
        receiver.secret = made.json()["secret"]
        endpoint = made.json()["endpoint_id"]
        rule = http.post(
            "/v1/alert-rules",
            json={
                "target_kind": "customer",
                "target_id": CUSTOMER,
                "condition": "balance_below_percent",
                "threshold": "25",
            },
        )
        assert rule.status_code == 201, rule.text
        rule_id = rule.json()["rule_id"]
        credit = f"/v1/credit/{CUSTOMER}"
        granted = http.post(
            f"{credit}/grants",
            json={"amount": str(half), "effective_at": "2026-11-01T00:00:00Z"},
            headers={"Idempotency-Key": "first"},
        )
        assert granted.status_code == 201

        for batch in batches:
            system.publish(batch)

        def alerts_received(count: int) -> bool:
            return len([m for m in receiver.processed if m["type"] == "credit.alert"]) >= count

        wait_for(lambda: alerts_received(1), 90, "the first alert, after the receiver recovers")
        wait_for(lambda: http.get(f"{credit}/enforcement").json()["status"] == "suspended", 60, "the suspension")
        seen: list[tuple[str, int]] = []

        def delivered_at_the_third_attempt() -> bool:
            listed = http.get(f"/v1/webhook-endpoints/{endpoint}/deliveries").json()
            seen[:] = [(d["status"], d["attempts"]) for d in listed]
            return seen == [("delivered", 3)]

        # an outcome is stored with the outbox's next round, a moment after the receiver has it
        wait_for(delivered_at_the_third_attempt, 10, "two failures, then delivered", seen)

        top_up = http.post(f"{credit}/top-ups", json={"amount": "1000.00"}, headers={"Idempotency-Key": "rescue"})
        assert top_up.status_code == 201
        wait_for(lambda: http.get(f"{credit}/enforcement").json()["status"] == "active", 30, "the top-up to lift it")
        voided = http.post(f"{credit}/grants/{top_up.json()['grant_id']}/void")
        assert voided.status_code == 200
        wait_for(lambda: alerts_received(2), 60, "the second crossing's alert")
        wait_for(lambda: http.get(f"{credit}/enforcement").json()["status"] == "suspended", 30, "suspended again")

        alerts = http.get(f"{credit}/alerts").json()
        assert [a["alert_id"] for a in alerts] == [f"{rule_id}.{CUSTOMER}.2", f"{rule_id}.{CUSTOMER}.1"]
        assert all("under 25%" in a["reason"] for a in alerts)
        assert sorted(m["id"] for m in receiver.processed) == sorted(a["alert_id"] for a in alerts)

        # sent again by hand: the same message id, which the receiver refuses as a replay
        delivery = f"{rule_id}.{CUSTOMER}.1@{endpoint}"
        again = http.post(f"/v1/webhook-endpoints/{endpoint}/deliveries/{delivery}/resend")
        assert again.status_code == 200
        wait_for(lambda: receiver.refused, 30, "the re-sent message")
        assert receiver.refused == [f"replay: {rule_id}.{CUSTOMER}.1"]
        assert len(receiver.processed) == 2

        on_topic = {json.loads(m)["id"] for m in system.topic_messages(system.settings.topics.alerts)}
        assert on_topic == {a["alert_id"] for a in alerts}
        statuses = [json.loads(m)["status"] for m in system.topic_messages(system.settings.topics.enforcement)]
        assert statuses == ["suspended", "active", "suspended"]
        balance = http.get(f"{credit}/balance").json()["balances"]
        assert [Decimal(b["balance"]) for b in balance] == [Decimal("0.00")]
        assert Fraction(half) < cost
    finally:
        system.stop_all()


def test_endpoints_outside_the_allowed_hosts_are_refused_and_nothing_is_stored(system: System):
    system.start_api()
    for url in ("http://169.254.169.254/latest", "https://u:p@127.0.0.1/", "file:///etc/passwd", "http://localhost/"):
        answer = system.http.post("/v1/webhook-endpoints", json={"url": url})
        assert answer.status_code == 400, (url, answer.text)
        assert answer.json()["detail"]
    assert system.http.get("/v1/webhook-endpoints").json() == []
    bad_rules = [
        ({"target_kind": "customer", "target_id": "nobody", "condition": "cost_over", "threshold": "1"}, 404),
        ({"target_kind": "customer", "target_id": CUSTOMER, "condition": "nothing", "threshold": "1"}, 422),
        ({"target_kind": "customer", "target_id": CUSTOMER, "condition": "cost_over", "threshold": "-1"}, 422),
        (
            {
                "target_kind": "customer",
                "target_id": CUSTOMER,
                "condition": "balance_below_percent",
                "threshold": "150",
            },
            400,
        ),
        ({"target_kind": "billing", "target_id": "sometimes", "condition": "cost_over", "threshold": "1"}, 404),
    ]
    for body, status in bad_rules:
        answer = system.http.post("/v1/alert-rules", json=body)
        assert answer.status_code == status, (body, answer.text)
    assert system.http.get("/v1/alert-rules").json() == []


def test_an_owner_keeps_a_bounded_number_of_rules_endpoints_secrets_and_plans(broker: Broker, tmp_path):
    system = system_with_catalog(broker, tmp_path, prepay_catalog(), METERLINE_WEBHOOK_ALLOWED_HOSTS="127.0.0.1:*")
    system.start_api()
    try:
        owned_within_bounds(system)
    finally:
        system.stop_all()


def owned_within_bounds(system: System) -> None:
    rule = {"target_kind": "customer", "target_id": CUSTOMER, "condition": "balance_below"}
    assert system.http.post("/v1/alert-rules", json={**rule, "threshold": "0"}).status_code == 201
    again = system.http.post("/v1/alert-rules", json={**rule, "threshold": "0.00"})
    assert again.status_code == 409 and "already watches" in again.json()["detail"]
    for threshold in range(1, 100):
        assert system.http.post("/v1/alert-rules", json={**rule, "threshold": str(threshold)}).status_code == 201
    assert system.http.post("/v1/alert-rules", json={**rule, "threshold": "100"}).status_code == 409
    assert len(system.http.get("/v1/alert-rules").json()) == 100

    made = [system.http.post("/v1/webhook-endpoints", json={"url": f"http://127.0.0.1:9/{n}"}) for n in range(10)]
    assert [answer.status_code for answer in made] == [201] * 10
    assert system.http.post("/v1/webhook-endpoints", json={"url": "http://127.0.0.1:9/0"}).status_code == 409
    assert system.http.post("/v1/webhook-endpoints", json={"url": "http://127.0.0.1:9/10"}).status_code == 409

    rotate = f"/v1/webhook-endpoints/{made[0].json()['endpoint_id']}/rotate-secret"
    assert [system.http.post(rotate, json={"overlap_s": 60}).json()["secrets_in_force"] for _ in range(2)] == [2, 3]
    assert system.http.post(rotate, json={"overlap_s": 60}).status_code == 409
    assert system.http.post(rotate, json={"overlap_s": "60"}).status_code == 422
    assert system.http.post(rotate, json={"overlap_s": 0}).json()["secrets_in_force"] == 1
    deliveries = f"/v1/webhook-endpoints/{made[0].json()['endpoint_id']}/deliveries"
    assert system.http.get(deliveries, params={"status": "bogus"}).status_code == 422

    plans = f"/v1/credit/{CUSTOMER}/top-up-plans"
    plan = {"kind": "threshold", "floor": "5.00", "target": "25.00"}
    key = {"Idempotency-Key": "first-plan"}
    first, retried = (system.http.post(plans, json=plan, headers=key) for _ in range(2))
    assert first.status_code == retried.status_code == 201
    assert first.json()["plan_id"] == retried.json()["plan_id"]
    assert (first.json()["floor"], first.json()["target"]) == ("5.00", "25.00")
    assert system.http.post(plans, json={**plan, "target": "30.00"}, headers=key).status_code == 409
    assert system.http.post(plans, json=plan).status_code == 409  # one threshold plan per holder
    assert len(system.http.get(plans).json()) == 1

    # requests at once take turns: one plan, not several; rotations one after another
    def threshold_plan(target: int) -> int:
        body = {"kind": "threshold", "floor": "2.00", "target": f"{target}.00"}
        return system.http.post("/v1/credit/cust-00002/top-up-plans", json=body).status_code

    with ThreadPoolExecutor(12) as pool:
        assert sorted(pool.map(threshold_plan, range(10, 22))) == [201] + [409] * 11
    fresh = system.http.post("/v1/webhook-endpoints", json={"url": "http://127.0.0.1:9/fresh"})
    assert fresh.status_code == 409, "the owner's ten endpoints are made"
    rotate = f"/v1/webhook-endpoints/{made[1].json()['endpoint_id']}/rotate-secret"
    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(lambda _: system.http.post(rotate, json={"overlap_s": 60}).status_code, range(8)))
    assert statuses == [200, 200] + [409] * 6, "from one secret to three, then refused"
