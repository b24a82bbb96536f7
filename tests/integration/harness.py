"""Runs meterline's processes against a real broker for one test, with names of its own."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from agents.main import messages_of
from agents.publisher import SpooledPublisher
from agents.spool import Spool
from billing.adapters.catalog_file import load_catalog
from billing.adapters.kafka_catalog import CatalogPublisher
from billing.catalog_entries import entries_of
from meterline.brokers import Broker, ensure_topics
from meterline.run import STOP_WITHIN_S
from meterline.settings import Settings
from schemas.events import Event

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def free_port(pair: bool = False) -> int:
    """A free port (and, with ``pair``, a free one right after it)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if not pair:
            return port
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue


def wait_for(check: Callable[[], T | None], timeout_s: float = 90, what: str = "condition", seen: object = None) -> T:
    """``check``'s first truthy result within ``timeout_s``; on timeout, the failure names
    ``what`` and shows ``seen`` (what the check last observed, if it records it there)."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (httpx.HTTPError, OSError) as error:
            last = error
        time.sleep(0.3)
    raise AssertionError(
        f"timed out after {timeout_s:.0f} s waiting for {what}; last error: {last!r}; last seen: {seen!r}"
    )


@dataclass
class System:
    """One test's meterline: its topics, consumer groups, data dir, API and Faust workers."""

    broker: Broker
    data_dir: Path
    overrides: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    commands: dict[str, tuple[list[str], dict[str, str]]] = field(default_factory=dict)
    restarts: list[tuple[str, int]] = field(default_factory=list)
    """(process, exit status) of each restart ``supervised`` made."""

    def __post_init__(self) -> None:
        tag = uuid.uuid4().hex[:10]
        self.api_port = free_port()
        self.env = {
            "METERLINE_KAFKA_BOOTSTRAP": self.broker.bootstrap,
            "METERLINE_DATA_DIR": str(self.data_dir),
            "METERLINE_API_PORT": str(self.api_port),
            "METERLINE_WORKER_METRICS_PORT": str(free_port()),
            "METERLINE_CONSUMER_GROUP": f"test-{tag}",
            "METERLINE_TOPIC_EVENTS": f"{tag}.events",
            "METERLINE_TOPIC_RATED": f"{tag}.rated",
            "METERLINE_TOPIC_DEAD_LETTER": f"{tag}.deadletter",
            "METERLINE_TOPIC_CATALOG": f"{tag}.catalog",
            "METERLINE_TOPIC_STORED": f"{tag}.stored",
            "METERLINE_TOPIC_ALERTS": f"{tag}.alerts",
            "METERLINE_TOPIC_ENFORCEMENT": f"{tag}.enforcement",
            "METERLINE_TOPIC_PARTITIONS": "2",
            "METERLINE_SINK_FLUSH_INTERVAL_S": "0.1",
            "METERLINE_AUTO_CLOSE": "false",
            # the tests replay usage of fixed months of 2026: a wide window keeps them valid as the
            # calendar moves on (the acceptance window has tests of its own)
            "METERLINE_LATE_USAGE_MONTHS": "120",
            "METERLINE_ADMIN_KEY": f"mlk_admin_{secrets.token_urlsafe(24)}",
            # the tests call fast from one key; the limits have tests of their own
            "METERLINE_RATE_LIMIT_PER_S": "100000",
            "METERLINE_RATE_LIMIT_BURST": "100000",
            **self.overrides,
        }
        self.settings = self._settings()
        ensure_topics(self.settings)
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.http = self.client(self.env["METERLINE_ADMIN_KEY"])
        """The provider's admin, as the bootstrap key."""

    def client(self, credential: str | None) -> httpx.Client:
        """A client of this system's API presenting ``credential`` (or nothing), sending JSON."""
        headers = {"Content-Type": "application/json"}
        if credential:
            headers["Authorization"] = f"Bearer {credential}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def _settings(self) -> Settings:
        saved = dict(os.environ)
        os.environ.update(self.env)
        try:
            return Settings()
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def start(self, name: str, *argv: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        self.commands[name] = (list(argv), env or {})
        log = (self.data_dir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, *argv],
            cwd=ROOT,
            env={**os.environ, **self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes[name] = process
        return process

    def start_api(self) -> None:
        self.start("api", "-m", "api.main")
        wait_for(lambda: self.http.get("/readyz", timeout=2).status_code == 200, what="the API to be ready")

    def publish_catalog(self) -> None:
        """What a running API would have published: lets a worker start while no API runs."""
        CatalogPublisher(self.settings).publish(entries_of(load_catalog(self.settings.catalog)))

    def start_worker(self, name: str = "worker") -> None:
        """The first worker serves its metrics on the system's port, any other on one of its own."""
        port = self.env["METERLINE_WORKER_METRICS_PORT"] if name == "worker" else str(free_port())
        self.start(name, "-m", "pipeline.worker", env={"METERLINE_WORKER_METRICS_PORT": port})

    def start_all(self) -> System:
        self.start_api()
        self.start_worker()
        return self

    def supervised(self) -> AbstractContextManager[None]:
        """Start again any process that exits, as ``make run``'s supervisor (or a cluster) does."""

        def restart_the_exited() -> None:
            time.sleep(0.5)
            for name, process in list(self.processes.items()):
                if process.poll() is not None and self.processes.get(name) is process:
                    self.restarts.append((name, process.returncode))
                    argv, env = self.commands[name]
                    self.start(name, *argv, env=env)

        return repeating(restart_the_exited)

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self, name: str) -> None:
        """As ``make run``'s supervisor stops a child to restart it: SIGTERM, then SIGKILL after
        ``STOP_WITHIN_S`` (a client closing against a broker that is down can take longer)."""
        process = self.processes.pop(name)
        process.terminate()
        try:
            process.wait(timeout=STOP_WITHIN_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop_all(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for name, process in list(self.processes.items()):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            self.processes.pop(name)

    def rollup_drift(self) -> int:
        """Stop every process (the API owns the engine's data dir) and recount the rollups from the
        stored events, in a process of its own (one engine per process): rows that differ."""
        self.stop_all()
        recount = subprocess.run(
            [sys.executable, "-m", "storage.rollups"], cwd=ROOT, env={**os.environ, **self.env}, capture_output=True
        )
        assert recount.returncode in (0, 1), recount.stderr.decode()[-2000:]
        return int(json.loads(recount.stdout)["rollup_rows_differing"])

    def publisher(self, name: str = "test-agent") -> SpooledPublisher:
        return SpooledPublisher(self.settings, f"agent/{name}", Spool(self.data_dir / "spool" / name))

    def publish(self, batches: dict[str, list[Event]], publisher: SpooledPublisher | None = None) -> None:
        """Send each source's events through the agent's spooled publisher, as the agents send
        them by default: VM samples as Arrow streams, the others as JSON batches."""
        publisher = publisher or self.publisher()
        publisher.publish_group(messages_of(batches))
        assert publisher.flush(30) == 0, "the broker did not acknowledge every batch"

    def usage(self, customer_id: str, **params: str) -> dict[str, Any]:
        params.setdefault("from", "2020-01-01T00:00:00Z")
        params.setdefault("to", "2030-01-01T00:00:00Z")
        response = self.http.get(f"/v1/customers/{customer_id}/usage", params=params)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def metric(self, sample: str, url: str | None = None) -> float:
        """One sample of the API process's Prometheus metrics (or another's), e.g. ``name{label="x"}``."""
        for line in httpx.get(url or f"{self.url}/metrics", timeout=10).text.splitlines():
            if line.startswith(sample + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def worker_metric(self, sample: str) -> float:
        return self.metric(sample, f"http://127.0.0.1:{self.env['METERLINE_WORKER_METRICS_PORT']}/metrics")

    def topic_messages(self, topic: str) -> list[bytes]:
        """Every message in a topic, read with a throw-away consumer group."""
        return [value for messages in self.partition_messages(topic).values() for _key, value in messages]

    def partition_messages(self, topic: str) -> dict[int, list[tuple[bytes, bytes]]]:
        """Every message (key, value) in each partition of a topic, read with a throw-away
        consumer group."""
        consumer = Consumer(
            {
                "bootstrap.servers": self.broker.bootstrap,
                "group.id": f"peek-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
            }
        )
        try:
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            messages: dict[int, list[tuple[bytes, bytes]]] = {}
            for number in partitions:
                low, high = watermarks(consumer, TopicPartition(topic, number))
                if high <= low:
                    continue
                consumer.assign([TopicPartition(topic, number, low)])
                read = 0
                while True:
                    # the embedded broker's listing may end at its last record batch's start: read
                    # on past it until nothing more comes
                    message = consumer.poll(5 if read < high - low else 1)
                    if message is None:
                        break
                    # what the consumer fetched of the partition read before may still come
                    if message.error() is None and message.partition() == number:
                        messages.setdefault(number, []).append((message.key() or b"", message.value() or b""))
                        read += 1
            return messages
        finally:
            consumer.close()


def watermarks(consumer: Consumer, partition: TopicPartition) -> tuple[int, int]:
    """A partition's offsets, once it has a leader: a broker just restarted elects them first."""
    deadline = time.monotonic() + 30
    while True:
        try:
            low, high = consumer.get_watermark_offsets(partition, timeout=10)
            return int(low), int(high)
        except KafkaException as error:
            leaderless = error.args[0].code() in (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE)
            if not (leaderless or error.args[0].retriable()) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@contextmanager
def repeating(step: Callable[[], None]) -> Iterator[None]:
    """``step`` done again and again, in a thread of its own, while the block runs; a step that
    raises stops the repeating, and its error is raised when the block ends."""
    stop = threading.Event()
    failures: list[Exception] = []

    def run() -> None:
        while not stop.is_set():
            try:
                step()
            except Exception as error:
                failures.append(error)
                return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    if failures:
        raise failures[0]


def system_with_catalog(broker: Broker, data_dir: Path, catalog: dict[str, Any], **overrides: str) -> System:
    """A System (not started) whose API seeds its catalog store from ``catalog``."""
    path = data_dir / "catalog.yaml"
    path.write_text(yaml.safe_dump(catalog))
    return System(broker, data_dir, overrides={"METERLINE_CATALOG": str(path), **overrides})
