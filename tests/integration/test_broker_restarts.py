"""A broker that restarts under running processes, as a production broker does: the API (intake
and sink) and the workers are left running, and must find their way back on their own.

Batches are POSTed steadily while the broker is killed (kill -9) and started again, several times,
at random moments; the embedded broker comes back empty (its topics are created again, as an
operator's deployment would), Apache Kafka with its log. Everything acknowledged is stored once.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest

from meterline.brokers import Broker, ensure_topics
from pipeline.app import EXIT_STALLED
from tests.integration.harness import System, wait_for
from tests.integration.test_fault_matrix import PER_BATCH, Tally, batches, push, settle

pytestmark = pytest.mark.integration
BATCHES = 60
RESTARTS = 3


def test_broker_restarts_under_running_processes_lose_nothing_acknowledged(broker: Broker, tmp_path: Path):
    system = System(broker, tmp_path)
    tally = Tally("broker restarted 3 times under running processes", type(broker).__name__)
    chance = random.Random()  # noqa: S311 - when to restart: any moment must do
    try:
        system.start_all()
        system.start_worker("worker-2")
        first, *rest = batches("cust-restarts", BATCHES)
        assert push(system, first, tally).status_code == 202
        wait_for(lambda: stored(system) == PER_BATCH, 120, "the pipeline to run")
        sending = threading.Thread(target=send_steadily, args=(system, rest, tally), daemon=True)
        with system.supervised():
            sending.start()
            for _ in range(RESTARTS):
                time.sleep(chance.uniform(1, 6))
                broker.stop(kill=True)
                time.sleep(chance.uniform(0.5, 4))
                broker.start()
                ensure_topics(system.settings)
            sending.join()
            settle(system, ["cust-restarts"], tally)
        assert not [name for name, _ in system.restarts if name == "api"], "the API found its way back in place"
        assert not [status for _, status in system.restarts if status != EXIT_STALLED], "only stalled workers exit"
        assert tally.acknowledged > BATCHES * PER_BATCH / 2, "most batches were acknowledged"
        assert system.rollup_drift() == 0
    finally:
        system.stop_all()
        if broker.exited:  # the session's other tests need it
            broker.start()


def send_steadily(system: System, rest: list[list[dict[str, object]]], tally: Tally) -> None:
    """A batch every 0.25 s, as a service pushing usage does; a refusal (broker away) is not retried."""
    for batch in rest:
        try:
            push(system, batch, tally, timeout_s=10)
        except Exception:  # noqa: BLE001, S112 - a timed-out request is simply not acknowledged
            continue
        time.sleep(0.25)


def stored(system: System) -> int:
    from tests.integration.test_fault_matrix import stored_units

    return stored_units(system, "cust-restarts")
