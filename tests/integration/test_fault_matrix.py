"""What was acknowledged is stored once, whatever is killed: the fault matrix of the README.

Services push XaaS events of one unit each as JSON, and agents send VM samples of one vCPU-hour
each (12 vCPUs for 5 minutes, nothing else metered) as Arrow streams, the agents' default: one
rated row of quantity 1 per event either way, so a customer's stored quantity is the number of
its events stored. It compares that with what
was acknowledged, and writes one line of figures to ``test-artifacts/fault-matrix.jsonl``:
sent, acknowledged, stored, doubled, lost.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from agents.publisher import SpooledPublisher
from meterline.brokers import Broker, ensure_topics
from schemas import columnar
from schemas.events import Event, encode_batch
from tests.factories import vm_sample, xaas_usage
from tests.integration.harness import System, repeating, wait_for

pytestmark = pytest.mark.integration
ARTIFACTS = Path("test-artifacts")
AT = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)
PER_BATCH = 20


@dataclass
class Tally:
    scenario: str
    broker: str
    sent: int = 0
    acknowledged: int = 0
    stored: int = 0

    @property
    def doubled(self) -> int:
        return max(0, self.stored - self.acknowledged)

    @property
    def lost(self) -> int:
        return max(0, self.acknowledged - self.stored)

    def report(self) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        line = {**asdict(self), "doubled": self.doubled, "lost": self.lost}
        with (ARTIFACTS / "fault-matrix.jsonl").open("a") as handle:
            handle.write(json.dumps(line) + "\n")


def batches(customer: str, count: int, first: int = 0) -> list[list[Event]]:
    """``count`` batches of ``PER_BATCH`` one-unit events of ``customer``, each its own resource."""
    return [
        [
            xaas_usage(quantity="1", customer_id=customer, resource_id=f"{customer}-r{n}", at=AT)
            for n in range(start * PER_BATCH, (start + 1) * PER_BATCH)
        ]
        for start in range(first, first + count)
    ]


def vm_batches(customer: str, count: int, first: int = 0) -> list[bytes]:
    """``count`` Arrow streams of ``PER_BATCH`` VM samples of ``customer``, one vCPU-hour each,
    each its own VM."""
    return [
        columnar.encode(
            [
                vm_sample(f"{customer}-vm{n}", customer, AT, vcpu=12, ram_mb=0, disks=[], cpu_time_s=0, net_tx_bytes=0)
                for n in range(start * PER_BATCH, (start + 1) * PER_BATCH)
            ]
        )
        for start in range(first, first + count)
    ]


def push(system: System, batch: list[Event], tally: Tally, timeout_s: float = 30) -> httpx.Response:
    """POST one batch to the intake, counting it acknowledged on a 202."""
    tally.sent += len(batch)
    response = system.http.post("/v1/events", content=encode_batch(batch), timeout=timeout_s)
    if response.status_code == 202:
        tally.acknowledged += len(response.json()["accepted"])
    return response


def stored_units(system: System, customer: str) -> int:
    rows = system.usage(customer)["rows"]
    return int(sum(Decimal(row["quantity"]) for row in rows))


def settle(system: System, customers: list[str], tally: Tally, also: Callable[[], None] = lambda: None) -> None:
    """Wait until all acknowledged events are stored, then a little longer, for any double."""

    def all_stored() -> bool:
        also()
        tally.stored = sum(stored_units(system, customer) for customer in customers)
        return tally.stored >= tally.acknowledged

    wait_for(all_stored, 180, f"{tally.acknowledged} acknowledged events to be stored")
    time.sleep(3)
    tally.stored = sum(stored_units(system, customer) for customer in customers)
    tally.report()
    assert (tally.lost, tally.doubled) == (0, 0)


def pumping(publisher: SpooledPublisher) -> AbstractContextManager[None]:
    """An agent's loop, as far as sending goes: pump its publisher all the time."""
    return repeating(lambda: publisher.pump(0.1))


def restart_broker(broker: Broker, system: System) -> None:
    """As ``make run``'s supervisor does: stop the API and the worker, start the broker again
    with its topics, then start them (the API publishes the catalog again)."""
    system.stop("api")
    system.stop("worker")
    broker.start()
    ensure_topics(system.settings)
    system.start_all()


def test_broker_killed_and_down_for_a_minute_loses_nothing_acknowledged(broker: Broker, tmp_path: Path):
    """kill -9 of the broker right after it acknowledged: the embedded one forgets its topics.
    For 60 s the intake and an agent keep accepting into their spools, the intake up to its
    bound and then refusing at once; after the restart everything acknowledged is stored once."""
    system = System(broker, tmp_path, overrides={"METERLINE_INTAKE_SPOOL_MAX_BYTES": "60000"})
    tally = Tally("broker kill -9, down 60 s", type(broker).__name__)
    agent = system.publisher("fault-agent")
    try:
        system.start_all()
        with pumping(agent):
            first = batches("cust-intake", 11)
            assert push(system, first[0], tally).status_code == 202
            wait_for(lambda: stored_units(system, "cust-intake") == PER_BATCH, 120, "the worker to be running")
            for n, batch in enumerate(first[1:], start=2):
                assert push(system, batch, tally).status_code == 202
                # stored one by one: a busy machine must not fill the intake's spool before the kill
                wait_for(lambda n=n: stored_units(system, "cust-intake") == n * PER_BATCH, 60, "the batch stored")
            for stream in vm_batches("cust-agent", 10):
                agent.publish("fault-agent", stream)
                tally.sent += PER_BATCH
                tally.acknowledged += PER_BATCH  # an agent's acknowledgement is its spool's fsync
            assert agent.flush(30) == 0, "the broker acknowledged the agent's batches"
            broker.stop(kill=True)

            down_since = time.monotonic()
            refused_within = []
            for batch in batches("cust-intake", 40, first=11):
                began = time.monotonic()
                response = push(system, batch, tally)
                if response.status_code == 503:
                    refused_within.append(time.monotonic() - began)
                    assert response.headers["Retry-After"].isdigit()
            for stream in vm_batches("cust-agent", 10, first=10):
                agent.publish("fault-agent", stream)
                tally.sent += PER_BATCH
                tally.acknowledged += PER_BATCH
            assert refused_within, "the intake's spool bound was reached and further batches refused"
            assert max(refused_within) < 1.0, "a refusal comes at once, not after a broker timeout"
            time.sleep(max(0.0, 60 - (time.monotonic() - down_since)))
            restart_broker(broker, system)
            settle(system, ["cust-intake", "cust-agent"], tally)
            assert system.rollup_drift() == 0
        assert tally.acknowledged < tally.sent, "some were refused, and those are not counted"
    finally:
        agent.close()
        system.stop_all()
        if broker.exited:  # the session's other tests need it
            broker.start()


def test_api_killed_right_after_acknowledging_loses_nothing(system: System):
    """kill -9 of the API (the intake and the sink) just after its 202s: its spool is replayed."""
    tally = Tally("API kill -9", type(system.broker).__name__)
    system.start_all()
    for batch in batches("cust-k", 10):
        assert push(system, batch, tally).status_code == 202
    system.kill("api")
    system.start_api()
    settle(system, ["cust-k"], tally)
    assert system.rollup_drift() == 0


def test_a_tenth_of_the_messages_sent_again_is_counted_once(system: System):
    """Clients retry: one batch in ten is POSTed twice, and an agent sends one in ten again."""
    tally = Tally("10 % re-sent", type(system.broker).__name__)
    system.start_all()
    agent = system.publisher("resending-agent")
    for n, batch in enumerate(batches("cust-r", 30)):
        push(system, batch, tally)
        if n % 10 == 0:
            push(system, batch, tally)
            tally.acknowledged -= len(batch)  # the same events: acknowledged once
    for n, stream in enumerate(vm_batches("cust-ra", 30)):
        for _ in range(2 if n % 10 == 0 else 1):
            agent.publish("resending-agent", stream)
            tally.sent += PER_BATCH
        tally.acknowledged += PER_BATCH
    try:
        settle(system, ["cust-r", "cust-ra"], tally, also=lambda: agent.pump(0.1))
        assert agent.drain(30) == 0, "every batch of the agent was announced stored"
    finally:
        agent.close()
    assert system.rollup_drift() == 0


def test_late_events_after_a_close_are_stored_once_and_billed_later(system: System):
    """Usage of a month already closed is kept (and billed with the next invoice)."""
    tally = Tally("late events after a close", type(system.broker).__name__)
    system.start_all()
    for batch in batches("cust-1", 2):
        assert push(system, batch, tally).status_code == 202
    wait_for(lambda: stored_units(system, "cust-1") >= tally.acknowledged, 120, "the first events")
    closed = system.http.post(f"/v1/periods/{AT:%Y-%m}/close", timeout=120)
    assert closed.status_code == 200, closed.text
    for batch in batches("cust-1", 3, first=2):
        assert push(system, batch, tally).status_code == 202
    settle(system, ["cust-1"], tally)
    assert system.rollup_drift() == 0
