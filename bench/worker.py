"""The rating stage on its own, where the end-to-end bench is too noisy to see a change in it.

Prints one JSON line:
- ``stage_cpu_us_per_event``: ``process_batch`` plus the frame encoding, in this process, on
  batches of ``--batch-messages`` messages of the simulated fleet (best of ``--repeats``);
- ``worker_cpu_us_per_event`` / ``worker_events_per_s``: one Faust worker process reading a
  topic that already holds ``--ticks`` poll cycles, on the embedded broker, with nothing else
  running; the difference from the stage figure is Faust, aiokafka and the broker round trips.

Run: ``make bench-worker``. Figures on the 2-core reference machine are in the README.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from billing.pricing import price_book

# one polars thread, as pipeline.worker sets it; before polars is imported
os.environ.setdefault("POLARS_MAX_THREADS", "1")

import httpx  # noqa: E402
from confluent_kafka import Producer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.simulated import FleetSpec, SimulatedFleet  # noqa: E402
from bench.pipeline import cpu_seconds, messages, metric_value  # noqa: E402
from billing.adapters.catalog_file import load_catalog  # noqa: E402
from billing.adapters.kafka_catalog import CatalogPublisher  # noqa: E402
from billing.catalog_entries import entries_of  # noqa: E402
from meterline.brokers import TansuBroker, ensure_topics  # noqa: E402
from meterline.kafka_config import producer_config  # noqa: E402
from meterline.settings import Settings  # noqa: E402
from pipeline.dedup import RecentEvents  # noqa: E402
from pipeline.processing import process_batch  # noqa: E402
from schemas.records import USAGE_EVENT_SCHEMA, encode_frame  # noqa: E402
from tests.integration.harness import free_port, wait_for  # noqa: E402

START = datetime(2026, 11, 1, tzinfo=UTC)


def poll_cycles(fleet: SimulatedFleet, ticks: int) -> list[list[tuple[str, bytes]]]:
    """The messages of each poll cycle, as the fleet's agents send them."""
    return [messages(fleet, START + timedelta(seconds=fleet.spec.interval_s * n)) for n in range(ticks)]


def stage_cpu_us(cycles: list[list[tuple[str, bytes]]], batch_messages: int, repeats: int, settings: Settings) -> float:
    book = price_book(load_catalog(settings.catalog))
    payloads = [payload for cycle in cycles for _, payload in cycle]
    best = float("inf")
    for _ in range(repeats):
        recent, events, began = RecentEvents(), 0, time.process_time()
        for start in range(0, len(payloads), batch_messages):
            outcome = process_batch(payloads[start : start + batch_messages], recent, book)
            encode_frame(outcome.events, USAGE_EVENT_SCHEMA)
            recent.remember(outcome.identities)
            events += outcome.events.height
        best = min(best, (time.process_time() - began) / events)
    return best * 1e6


def events_in(url: str) -> float:
    try:
        return metric_value(url, "meterline_pipeline_events_in_total")
    except httpx.HTTPError:
        return 0.0  # the worker has not opened its metrics port yet


def worker_figures(cycles: list[list[tuple[str, bytes]]], total: int, home: Path) -> tuple[float, float]:
    """CPU per event and events/s of one worker process, from its first event to its last."""
    broker = TansuBroker(free_port(), home / "tansu.log")
    broker.start()
    port = free_port()
    env = {
        **os.environ,
        "METERLINE_KAFKA_BOOTSTRAP": broker.bootstrap,
        "METERLINE_DATA_DIR": str(home),
        "METERLINE_WORKER_METRICS_PORT": str(port),
    }
    os.environ.update(env)
    settings = Settings()
    ensure_topics(settings)
    CatalogPublisher(settings).publish(entries_of(load_catalog(settings.catalog)))
    producer = Producer(producer_config(settings))
    for cycle in cycles:
        for source, payload in cycle:
            producer.produce(settings.topics.events, payload, key=source)
            producer.poll(0)
    producer.flush(60)
    log = (home / "worker.log").open("ab")
    worker = subprocess.Popen([sys.executable, "-m", "pipeline.worker"], cwd=ROOT, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: events_in(url) > 0, 120, "the worker's first batch")
        cpu_before, began, counted_before = cpu_seconds(worker.pid), time.monotonic(), events_in(url)
        wait_for(lambda: events_in(url) >= total, 600, "the worker to read every event")
        events = total - counted_before
        return (cpu_seconds(worker.pid) - cpu_before) / events * 1e6, events / (time.monotonic() - began)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ticks", type=int, default=8, help="poll cycles of the 10,000-VM fleet")
    parser.add_argument("--batch-messages", type=int, default=Settings().pipeline_batch_messages)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    fleet = SimulatedFleet(FleetSpec(seed=1, customers=500, hypervisors=100, vms_per_hypervisor=100))
    per_tick = sum(len(events) for events in fleet.collect(START).values())
    cycles = poll_cycles(fleet, args.ticks)
    gc.freeze()  # as pipeline.worker does once started: the inputs are not the stage's garbage
    stage = stage_cpu_us(cycles, args.batch_messages, args.repeats, Settings())
    home = Path(tempfile.mkdtemp(prefix="meterline-bench-worker-"))
    worker_us, worker_rate = worker_figures(cycles, per_tick * args.ticks, home)
    print(
        json.dumps(
            {
                "benchmark": "worker",
                "events_per_tick": per_tick,
                "stage_cpu_us_per_event": round(stage, 2),
                "worker_cpu_us_per_event": round(worker_us, 2),
                "worker_events_per_s": round(worker_rate),
                "batch_messages": args.batch_messages,
            }
        )
    )


if __name__ == "__main__":
    main()
