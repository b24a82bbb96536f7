"""Soak: the embedded system at a steady rate for a long time; memory must stay flat, lag bounded.

An agent publishes ``--rate`` samples every second (a simulated fleet, stamped with the wall
clock) through Tansu, two Faust workers, the sink and chDB, for ``--minutes``. Every
``--every-s`` it notes each process's resident memory, the lag of the workers and the sink,
and the agent's backlog (messages not announced stored). Prints one JSON line: the samples
sent and stored, the series, and each process's RSS growth from the first tenth of the run to
the end (what a leak would show).

Run: ``make soak`` (one hour at 20,000 samples/s) or ``python bench/soak.py --minutes 5``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.publisher import SpooledPublisher  # noqa: E402
from agents.simulated import FleetSpec, SimulatedFleet  # noqa: E402
from agents.spool import Spool  # noqa: E402
from bench.pipeline import metric_value, publish_each_second, rows_written, start_embedded  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def memory_of(series: list[dict[str, object]]) -> list[dict[str, float]]:
    return [note["rss_mb"] for note in series if isinstance(note["rss_mb"], dict)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--rate", type=int, default=20_000, help="samples per second")
    parser.add_argument("--every-s", type=float, default=60, help="how often to note memory and lag")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    system = start_embedded("meterline-soak-", args.workers, METERLINE_AUTO_CLOSE="false")
    try:
        settings, url, worker_urls = system.settings, system.url, system.worker_urls
        home, broker, processes = system.home, system.broker, system.processes
        publisher = SpooledPublisher(settings, "agent/soak", Spool(home / "spool"))
        hypervisors = max(1, args.rate // 100)
        fleet = SimulatedFleet(
            FleetSpec(seed=3, customers=500, hypervisors=hypervisors, vms_per_hypervisor=100, vdcs=0, xaas_items=0)
        )
        per_second = len(fleet.vms)
        pids = {**{name: p.pid for name, p in processes.items()}, "broker": broker.pid, "agent": os.getpid()}

        series: list[dict[str, object]] = []
        began = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
        seconds = int(args.minutes * 60)
        next_note = time.monotonic()

        def note(second: int) -> None:
            nonlocal next_note
            if time.monotonic() < next_note:
                return
            next_note += args.every_s
            series.append(
                {
                    "t_s": second,
                    "rss_mb": {name: rss_mb(pid) for name, pid in pids.items()},
                    "worker_lag_messages": sum(
                        metric_value(worker, f'meterline_pipeline_consumer_lag_messages{{partition="{p}"}}')
                        for worker in worker_urls
                        for p in range(settings.topics.partitions)
                    ),
                    "sink_lag_messages": metric_value(
                        url, f'meterline_sink_consumer_lag_messages{{topic="{settings.topics.rated}"}}'
                    ),
                    "agent_backlog_messages": publisher.backlog,
                }
            )

        publish_each_second(publisher, fleet, began, seconds, note)
        sent = per_second * seconds
        left = publisher.drain(300)
        stored = rows_written(url, "usage_events")
        first, last = (rss[max(0, len(rss) // 10 - 1)], rss[-1]) if (rss := memory_of(series)) else ({}, {})
    finally:  # a soak that fails leaves no process running
        system.stop()
    publisher.close()
    print(
        json.dumps(
            {
                "minutes": args.minutes,
                "samples_per_s": args.rate,
                "samples_sent": sent,
                "usage_events_written": stored,
                "agent_backlog_at_end": left,
                "rss_growth_mb": {name: round(last[name] - first[name], 1) for name in last},
                "max_worker_lag_messages": max(float(str(note["worker_lag_messages"])) for note in series),
                "max_sink_lag_messages": max(float(str(note["sink_lag_messages"])) for note in series),
                "series": series,
            }
        )
    )


if __name__ == "__main__":
    main()
