"""The agent process: every interval, collect, spool and publish. ``python -m agents.main``."""

from __future__ import annotations

import argparse
import logging
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, Protocol

from agents.base import Collector
from agents.http_publisher import HttpPublisher
from agents.publisher import SpooledPublisher
from agents.simulated import FleetSpec, SimulatedFleet
from agents.spool import Spool
from meterline.settings import Settings
from schemas import columnar
from schemas.events import Event, EventType, encode_batch

REPORT_EVERY_S = 60.0
log = logging.getLogger("meterline.agent")
MAX_EVENTS_PER_MESSAGE = 500
MAX_ROWS_PER_MESSAGE = 1000
Encoding = Literal["columnar", "json"]


class Publisher(Protocol):
    """Where an agent's messages go: Kafka (``SpooledPublisher``) or an API (``HttpPublisher``);
    either keeps each message spooled until it is safe elsewhere."""

    def publish_group(self, batches: list[tuple[str, bytes]]) -> None: ...

    def pump(self, timeout_s: float = 0.0) -> None: ...

    def drain(self, timeout_s: float) -> int: ...

    @property
    def backlog(self) -> int: ...

    def close(self) -> None: ...


def publish_samples(publisher: Publisher, collector: Collector, at: datetime, encoding: Encoding = "columnar") -> int:
    """Collect at ``at`` and spool every source's samples, in messages of bounded size, as one group."""
    samples = collector.collect(at)
    publisher.publish_group(messages_of(samples, encoding))
    collector.spooled()
    return sum(len(events) for events in samples.values())


def messages_of(samples: dict[str, list[Event]], encoding: Encoding = "columnar") -> list[tuple[str, bytes]]:
    """Each source's samples as messages keyed by source: its VM samples as Arrow streams of at
    most ``MAX_ROWS_PER_MESSAGE`` rows (``columnar``), the rest as JSON batches of at most
    ``MAX_EVENTS_PER_MESSAGE`` events."""
    messages = []
    for source, events in samples.items():
        rows: list[Event] = []
        texts: list[Event] = []
        for event in events:
            as_row = encoding == "columnar" and event["type"] == EventType.VM_SAMPLE.value
            (rows if as_row else texts).append(event)
        messages += [
            (source, columnar.encode(rows[start : start + MAX_ROWS_PER_MESSAGE]))
            for start in range(0, len(rows), MAX_ROWS_PER_MESSAGE)
        ]
        messages += [
            (source, encode_batch(texts[start : start + MAX_EVENTS_PER_MESSAGE]))
            for start in range(0, len(texts), MAX_EVENTS_PER_MESSAGE)
        ]
    return messages


def run(
    collector: Collector,
    publisher: Publisher,
    interval_s: int,
    speed: float,
    ticks: int | None,
    start: datetime | None = None,
    encoding: Encoding = "columnar",
) -> None:
    """Sample every interval; with ``speed`` > 1, replay today so far that much faster first.

    The accelerated clock starts at ``start`` (default: midnight UTC) and never runs ahead of
    the wall clock: once it has caught up, samples come in real time, so no event is ever
    stamped in the future.
    """
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if start is not None:
        at = start
    elif speed > 1:
        at = midnight
    else:
        at = midnight + (now - midnight) // timedelta(seconds=interval_s) * timedelta(seconds=interval_s)
    started, done = time.monotonic(), 0
    report = TickReport()
    while not stopping and (ticks is None or done < ticks):
        at += timedelta(seconds=interval_s)
        due = started + (done + 1) * interval_s / speed
        while not stopping and (time.monotonic() < due or datetime.now(UTC) < at):
            publisher.pump(0.1)
        if stopping:
            break
        waiting = publisher.backlog  # of earlier ticks: this one's batches are about to be spooled
        report.tick(at, publish_samples(publisher, collector, at, encoding), waiting)
        done += 1
    publisher.drain(10)


class TickReport:
    """What the agent says about its ticks: a line a minute at most (an accelerated replay ticks
    twice a second), and a warning when earlier ticks' batches are still not taken."""

    def __init__(self, every_s: float = REPORT_EVERY_S) -> None:
        self._every_s = every_s
        self._reported = -float("inf")  # the first tick is told at once: the agent is up
        self._ticks = self._samples = 0

    def tick(self, at: datetime, samples: int, waiting: int) -> None:
        self._ticks += 1
        self._samples += samples
        if time.monotonic() - self._reported < self._every_s:
            return
        log.info("sampled %d times up to %s: %d samples", self._ticks, at.isoformat(), self._samples)
        if waiting:
            log.warning("%d batches of earlier ticks are not acknowledged yet: kept in the spool", waiting)
        self._reported, self._ticks, self._samples = time.monotonic(), 0, 0


def main() -> None:
    parser = argparse.ArgumentParser(description="meterline agent")
    parser.add_argument("--libvirt-uri", help="collect from libvirt (default: the simulated fleet)")
    parser.add_argument("--interval-s", type=int, default=300)
    parser.add_argument("--speed", type=float, default=1.0, help="clock acceleration, e.g. 60")
    parser.add_argument("--ticks", type=int, default=None, help="stop after this many intervals")
    parser.add_argument(
        "--start", type=datetime.fromisoformat, default=None, help="replay from this UTC time (default: midnight)"
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--hypervisors", type=int, default=20)
    parser.add_argument("--vms-per-hypervisor", type=int, default=50)
    parser.add_argument("--name", default="agent", help="names this agent's spool directory")
    parser.add_argument("--api-url", help="push through this meterline API instead of Kafka (with an ingest key)")
    parser.add_argument("--ingest-key-file", type=Path, help="the ingest key for --api-url, in a file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    settings = Settings()
    collector: Collector
    if args.libvirt_uri:
        from agents.libvirt_collector import LibvirtCollector

        state = settings.data_dir / "agents" / f"{args.name}.counters.json"
        state.parent.mkdir(parents=True, exist_ok=True)
        collector = LibvirtCollector(args.libvirt_uri, state, args.interval_s)
    else:
        spec = FleetSpec(
            args.seed, args.customers, args.hypervisors, args.vms_per_hypervisor, interval_s=args.interval_s
        )
        collector = SimulatedFleet(spec)
    spool = Spool(Path(settings.spool_dir) / args.name)
    publisher: Publisher
    if args.api_url:
        if args.ingest_key_file is None:
            parser.error("--api-url needs --ingest-key-file")
        publisher = HttpPublisher(args.api_url, args.ingest_key_file.read_text().strip(), spool)
    else:
        publisher = SpooledPublisher(settings, f"agent/{args.name}", spool)
    try:
        run(collector, publisher, args.interval_s, args.speed, args.ticks, args.start, settings.agent_encoding)
    finally:
        publisher.close()


if __name__ == "__main__":
    main()
