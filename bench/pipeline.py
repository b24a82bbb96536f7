"""End-to-end benchmark on the embedded default: agents -> Tansu -> Faust -> sink/chDB -> API.

Prints one JSON line:
- ``samples_per_s``: samples published as fast as the agent can, divided by the time until the
  sink has stored every one of them (so it is the slowest stage's sustained rate);
- ``freshness_p50_s`` / ``freshness_p99_s``: at a paced ``paced_samples_per_s``, from the end
  of each sample's interval (its event time) to the start of the sink flush that stored its row
  (the row's ``inserted_at``); it is queryable when that flush ends, which takes
  ``paced_sink_flush_mean_s`` on average (offset commit included);
- ``peak_rss_mb``: the high-water mark of each process.

Run: ``make bench`` (or ``python bench/pipeline.py --help`` for sizes). Figures on the 2-core
reference machine are in the README's Performance section.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.main import Encoding, messages_of  # noqa: E402
from agents.publisher import SpooledPublisher  # noqa: E402
from agents.simulated import FleetSpec, SimulatedFleet  # noqa: E402
from agents.spool import Spool  # noqa: E402
from bench.auth import guard_us_per_call  # noqa: E402
from meterline.brokers import TansuBroker, ensure_topics  # noqa: E402
from meterline.settings import Settings  # noqa: E402
from schemas import columnar  # noqa: E402
from tests.integration.harness import free_port, wait_for  # noqa: E402

# one client for the polling: a new one builds an SSL context each time, CPU the bench would
# count against the agent it shares a process with
HTTP = httpx.Client(timeout=10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (from /proc, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


ENCODING: list[Encoding] = ["columnar"]
"""The encoding the agents send VM samples in (``--encoding``)."""


def messages(fleet: SimulatedFleet, at: datetime) -> list[tuple[str, bytes]]:
    """One poll cycle of the fleet, cut into messages as its agents cut them."""
    return messages_of(fleet.collect(at), ENCODING[0])


def publish_each_second(
    publisher: SpooledPublisher,
    fleet: SimulatedFleet,
    began: datetime,
    seconds: int,
    after_each: Callable[[int], None] = lambda _second: None,
) -> None:
    """One poll cycle of ``fleet`` every second from ``began``, stamped with that second."""
    for second in range(seconds):
        at = began + timedelta(seconds=second)
        cycle = messages(fleet, at)
        while datetime.now(UTC) < at:
            publisher.pump(0.005)
        publisher.publish_group(cycle)
        publisher.pump()
        after_each(second)


def metric_value(url: str, sample: str) -> float:
    """One sample of the Prometheus metrics a process serves at ``url``, e.g. ``name{label="x"}``."""
    for line in HTTP.get(f"{url}/metrics").text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return 0.0


def rows_written(url: str, table: str) -> float:
    return metric_value(url, f'meterline_sink_rows_written_total{{table="{table}"}}')


def usage_query_ms(url: str, key: str, customers: list[str]) -> list[float]:
    """How long the API takes to answer a month of one customer's usage by day and meter, sorted."""
    timings = []
    for customer in customers:
        began = time.perf_counter()
        response = httpx.get(
            f"{url}/v1/customers/{customer}/usage",
            params={"from": "2026-11-01T00:00:00Z", "to": "2026-12-01T00:00:00Z", "granularity": "day"},
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        )
        response.raise_for_status()
        timings.append(round((time.perf_counter() - began) * 1000, 1))
    return sorted(timings)


def post_events_ms(url: str, key: str, bodies: list[bytes]) -> list[float]:
    """How long ``POST /v1/events`` takes to accept each body (spooled and fsynced), sorted."""
    timings = []
    for body in bodies:
        media_type = columnar.CONTENT_TYPE if columnar.is_columnar(body) else "application/json"
        headers = {"Authorization": f"Bearer {key}", "Content-Type": media_type}
        began = time.perf_counter()
        httpx.post(f"{url}/v1/events", content=body, headers=headers, timeout=60).raise_for_status()
        timings.append(round((time.perf_counter() - began) * 1000, 2))
    return sorted(timings)


@dataclass
class Embedded:
    """The embedded system started for a benchmark: Tansu, the API (with the sink) and workers."""

    home: Path
    broker: TansuBroker
    settings: Settings
    url: str
    processes: dict[str, subprocess.Popen[bytes]]
    worker_urls: list[str]

    @property
    def admin_key(self) -> str:
        key = self.settings.admin_key
        return key.get_secret_value() if key else ""

    def __enter__(self) -> Embedded:
        return self

    def __exit__(self, *_exception: object) -> None:
        self.stop()  # a benchmark that fails leaves no process running

    def stop(self) -> None:
        """Stop every process and the broker; again changes nothing."""
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=60)
        self.broker.stop()


def start_embedded(prefix: str, workers: int, **environment: str) -> Embedded:
    home = Path(tempfile.mkdtemp(prefix=prefix))
    broker = TansuBroker(free_port(), home / "tansu.log")
    broker.start()
    env = {
        **os.environ,
        "METERLINE_KAFKA_BOOTSTRAP": broker.bootstrap,
        "METERLINE_DATA_DIR": str(home),
        "METERLINE_API_PORT": str(free_port()),
        "METERLINE_TOPIC_PARTITIONS": "4",
        "METERLINE_ADMIN_KEY": f"mlk_admin_{secrets.token_urlsafe(24)}",
        **environment,
    }
    os.environ.update(env)
    settings = Settings()
    ensure_topics(settings)
    url = f"http://{settings.api_host}:{settings.api_port}"
    log = (home / "processes.log").open("ab")
    processes = {"api": subprocess.Popen([sys.executable, "-m", "api.main"], cwd=ROOT, env=env, stdout=log, stderr=log)}
    worker_urls = []
    for n in range(workers):
        port = free_port()
        worker_urls.append(f"http://127.0.0.1:{port}")
        processes[f"worker-{n}"] = subprocess.Popen(
            [sys.executable, "-m", "pipeline.worker"],
            cwd=ROOT,
            env={**env, "METERLINE_WORKER_METRICS_PORT": str(port)},
            stdout=log,
            stderr=log,
        )
    wait_for(lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200, 60, "the API")
    return Embedded(home, broker, settings, url, processes, worker_urls)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hypervisors", type=int, default=100)
    parser.add_argument("--vms-per-hypervisor", type=int, default=100)
    parser.add_argument("--ticks", type=int, default=60, help="intervals published in the throughput phase")
    parser.add_argument("--paced-rate", type=int, default=20_000, help="samples/s in the freshness phase")
    parser.add_argument("--paced-seconds", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="Faust worker processes (one per core)")
    parser.add_argument(
        "--interval-s", type=int, default=300, help="seconds between a VM's samples in the throughput phase"
    )
    parser.add_argument(
        "--encoding", choices=["columnar", "json"], default="columnar", help="how agents send VM samples"
    )
    args = parser.parse_args()
    ENCODING[0] = args.encoding

    with start_embedded("meterline-bench-", args.workers) as system:
        measure(system, args)


def measure(system: Embedded, args: argparse.Namespace) -> None:
    home, broker, settings, url, processes = system.home, system.broker, system.settings, system.url, system.processes
    publisher = SpooledPublisher(settings, "agent/bench", Spool(home / "spool"))

    spec = FleetSpec(
        seed=1,
        customers=500,
        hypervisors=args.hypervisors,
        vms_per_hypervisor=args.vms_per_hypervisor,
        interval_s=args.interval_s,
    )
    fleet = SimulatedFleet(spec)
    per_tick = sum(len(events) for events in fleet.collect(datetime.now(UTC)).values())

    # warm-up: one tick, so group joins and first compilations are not timed
    start = datetime(2026, 11, 1, tzinfo=UTC)
    publisher.publish_group(messages(fleet, start))
    publisher.drain(60)
    wait_for(lambda: rows_written(url, "usage_events") >= per_tick, 180, "the warm-up tick")

    prepared = [messages(fleet, start + timedelta(seconds=spec.interval_s * (n + 1))) for n in range(args.ticks)]
    total = per_tick * (args.ticks + 1)
    pids = {name: p.pid for name, p in processes.items()} | {"broker": broker.pid, "agent+bench": os.getpid()}
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    began = time.monotonic()
    for tick in prepared:  # each tick is one poll cycle of every simulated hypervisor's agent
        publisher.publish_group(tick)
        publisher.pump()
    publisher.drain(120)
    wait_for(lambda: rows_written(url, "usage_events") >= total, 900, "the throughput phase")
    samples_per_s = per_tick * args.ticks / (time.monotonic() - began)
    cpu_us_per_sample = {
        name: round((cpu_seconds(pid) - cpu_before[name]) * 1e6 / (per_tick * args.ticks), 1)
        for name, pid in pids.items()
    }

    paced_fleet = SimulatedFleet(
        FleetSpec(
            seed=2,
            customers=500,
            hypervisors=max(1, args.paced_rate // 100),
            vms_per_hypervisor=100,
            vdcs=0,
            xaas_items=0,
        )
    )
    flushes_before = [metric_value(url, f"meterline_sink_flush_seconds_{part}") for part in ("sum", "count")]
    began_paced = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    publish_each_second(publisher, paced_fleet, began_paced, args.paced_seconds)
    publisher.drain(60)
    paced_total = len(paced_fleet.vms) * args.paced_seconds
    wait_for(lambda: rows_written(url, "usage_events") >= total + paced_total, 300, "the paced phase")

    flush_seconds, flushes = (metric_value(url, f"meterline_sink_flush_seconds_{part}") for part in ("sum", "count"))
    flush_mean_s = (flush_seconds - flushes_before[0]) / max(1.0, flushes - flushes_before[1])
    query_ms = usage_query_ms(url, system.admin_key, [vm.customer_id for vm in fleet.vms[:20]])
    bodies = [payload for _, payload in messages(fleet, start + timedelta(days=1))[:50]]
    post_ms = post_events_ms(url, system.admin_key, bodies)
    guard_us = guard_us_per_call()
    rss = {name: round(peak_rss_mb(p.pid), 1) for name, p in processes.items()}
    rss["agent+bench"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    system.stop()

    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=settings.effective_clickhouse_dsn)
    stored = client.command(f"SELECT count() FROM {settings.clickhouse_database}.rated_usage")
    p50, p99, rows = client.query(
        "SELECT quantile(0.5)(lag), quantile(0.99)(lag), count() FROM ("
        " SELECT dateDiff('millisecond', usage_end, inserted_at) / 1000 AS lag"
        f" FROM {settings.clickhouse_database}.rated_usage WHERE usage_end >= {{since:DateTime64(3)}})",
        parameters={"since": began_paced},
    ).result_rows[0]
    print(
        json.dumps(
            {
                "encoding": args.encoding,
                "samples_per_s": round(samples_per_s),
                "throughput_samples": per_tick * args.ticks,
                "sample_interval_s": args.interval_s,
                "cpu_us_per_sample": cpu_us_per_sample,
                "paced_samples_per_s": args.paced_rate,
                "freshness_p50_s": round(float(p50), 3),
                "freshness_p99_s": round(float(p99), 3),
                "freshness_rated_rows": rows,
                "paced_sink_flush_mean_s": round(flush_mean_s, 3),
                "usage_query_p50_ms": query_ms[len(query_ms) // 2],
                "usage_query_max_ms": query_ms[-1],
                "post_events_p50_ms": post_ms[len(post_ms) // 2],
                "auth_guard_us": guard_us,
                "auth_overhead_pct": {
                    "post_events": round(guard_us / 10 / post_ms[len(post_ms) // 2], 2),
                    "usage_query": round(guard_us / 10 / query_ms[len(query_ms) // 2], 2),
                },
                "rated_rows_stored": stored,
                "pipeline_workers": args.workers,
                "peak_rss_mb": rss,
            }
        )
    )


if __name__ == "__main__":
    main()
