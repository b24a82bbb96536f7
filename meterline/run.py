"""``make run``: the whole system on one machine, each stage its own child process.

Start order follows the data: broker, topics, API (owns ClickHouse and runs the sink), Faust
workers, then the simulated fleet's agent. A child that dies is restarted: every stage resumes
from committed offsets or its spool, and storage keeps one row per event id. Ctrl-C stops all.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from meterline.brokers import Broker, TansuBroker, die_with_parent, ensure_topics, wait_until_ready
from meterline.settings import Settings

log = logging.getLogger("meterline.run")
STOP_WITHIN_S = 8.0
ADMIN_KEY_FILE = "admin.key"
AGENT_KEY_FILE = "agent.key"
API_START_WITHIN_S = 120.0
RESTART_DELAY_S = 2.0


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # dies with the supervisor, however that ends (kill -9 included): nothing left running
        self.process = subprocess.Popen(self.argv, env={**os.environ, **self.env}, preexec_fn=die_with_parent)

    def terminate(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()

    def wait_or_kill(self, deadline: float) -> None:
        """Wait for it to exit until ``deadline`` (monotonic), then kill it."""
        if self.process and self.process.poll() is None:
            try:
                self.process.wait(timeout=max(deadline - time.monotonic(), 0))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s; killing it", self.name, STOP_WITHIN_S)
                self.process.kill()
                self.process.wait()


def stop_all(running: list[Child]) -> None:
    """Ask every child to stop at once and give them STOP_WITHIN_S together.

    Killing one is safe: agents keep what was not acknowledged in their spool, and storage keeps
    one row per event however often it is written. Sequential stops with a broker down (each
    client waiting out its own timeouts) took 40 to 57 s."""
    for child in running:
        child.terminate()
    deadline = time.monotonic() + STOP_WITHIN_S
    for child in running:
        child.wait_or_kill(deadline)


def admin_key(settings: Settings) -> tuple[str, bool]:
    """The admin key the API starts with: ``METERLINE_ADMIN_KEY``, else one made at the first
    run and kept in the data dir (readable by its owner only). Returns it, and whether it is new."""
    if settings.admin_key is not None:
        return settings.admin_key.get_secret_value(), False
    path = settings.data_dir / ADMIN_KEY_FILE
    if path.exists():
        return path.read_text().strip(), False
    key = f"mlk_admin_{secrets.token_urlsafe(32)}"
    path.touch(mode=0o600)
    path.write_text(key + "\n")
    return key, True


def wait_for_api(base: str) -> None:
    """Until the API answers (its first start migrates the schema): the agent pushes to it."""
    deadline = time.monotonic() + API_START_WITHIN_S
    while True:
        try:
            httpx.get(f"{base}/healthz", timeout=2).raise_for_status()
            return
        except httpx.HTTPError as error:
            if time.monotonic() > deadline:
                raise SystemExit(f"the API did not answer within {API_START_WITHIN_S:.0f} s: {error}") from error
            time.sleep(0.5)


def ensure_agent_key(base: str, admin_key: str, path: Path) -> None:
    """The simulated agent's ingest key, bound to its sources (``sim://*``): made through the API
    at the first run and kept in the data dir, like the admin key."""
    if path.exists():
        return
    answer = httpx.post(
        f"{base}/v1/keys",
        json={"name": "simulated agent", "role": "ingest", "sources": ["sim://*"]},
        headers={"Authorization": f"Bearer {admin_key}"},
        timeout=10,
    )
    answer.raise_for_status()
    path.touch(mode=0o600)
    path.write_text(answer.json()["key"] + "\n")


def children(settings: Settings, agent_args: list[str], key: str) -> list[Child]:
    python = sys.executable
    workers = [
        Child(
            f"pipeline-{n}",
            [python, "-m", "pipeline.worker"],
            {"METERLINE_WORKER_METRICS_PORT": str(settings.worker_metrics_port + n)},
        )
        for n in range(settings.pipeline.workers)
    ]
    return [
        Child("api", [python, "-m", "api.main"], {"METERLINE_ADMIN_KEY": key}),
        *workers,
        Child("agent", [python, "-m", "agents.main", *agent_args]),
    ]


def supervise(running: list[Child], broker: Broker | None, settings: Settings) -> None:
    while True:
        time.sleep(0.5)
        if broker is not None and broker.exited:
            restart_broker(broker, settings, running)
        for child in running:
            if child.process and child.process.poll() is not None:
                log.warning("%s exited with %s; restarting", child.name, child.process.returncode)
                time.sleep(RESTART_DELAY_S)
                child.start()


def restart_broker(broker: Broker, settings: Settings, running: list[Child]) -> None:
    """Start a dead embedded broker again, with its topics, and restart the API and the workers.

    The embedded broker keeps topics and consumer groups in memory: what it held is gone. Every
    producer keeps what it sent until the sink announces it stored, and sends it again
    (``agents/publisher.py``); the API publishes the catalog again at start. The API and the
    workers are stopped before the broker starts, and started after: left running, a Faust
    worker stopped consuming, and a consumer that joined the new broker's group and then
    left wedged that group on Tansu for good."""
    log.warning("the embedded broker exited with %s; restarting it", broker.returncode)
    consumers = [child for child in running if child.name != "agent"]
    for child in consumers:
        child.terminate()
    deadline = time.monotonic() + STOP_WITHIN_S
    for child in consumers:
        child.wait_or_kill(deadline)
    broker.stop()
    broker.start()
    ensure_topics(settings)
    for child in consumers:
        child.start()


def _stop_on_signals() -> None:
    """Let SIGTERM (a service manager, `timeout`) and SIGINT stop the children like Ctrl-C does.

    SIGINT is set explicitly too: a process started in the background by a shell inherits it
    ignored, and Python then leaves it ignored.
    """

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, interrupt)


def _say_how_to_authenticate(settings: Settings, key: str, new: bool) -> None:
    base = f"http://{settings.api_host}:{settings.api_port}"
    key_file = settings.data_dir / ADMIN_KEY_FILE
    agent_key = settings.data_dir / AGENT_KEY_FILE
    print(f"meterline is up: API and docs at {base}/docs", flush=True)
    if new:
        print(f"  the first admin key, shown this once (kept in {key_file}, mode 600):\n    {key}", flush=True)
    shown = "$METERLINE_ADMIN_KEY" if settings.admin_key is not None else f"$(cat {key_file})"
    print(f'  every call takes a key: curl -H "Authorization: Bearer {shown}" \\', flush=True)
    print(f"    {base}/v1/customers/cust-00001/usage", flush=True)
    print(f"  make keys for partners, customers and services: POST {base}/v1/keys (README: Access)", flush=True)
    print(f"  the simulated agent pushes through the API with its ingest key ({agent_key})", flush=True)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    _stop_on_signals()
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    agent_args = sys.argv[1:] or ["--speed", "600", "--interval-s", "300"]
    broker = None
    if settings.embedded_broker:
        port = int(settings.kafka_bootstrap.rsplit(":", 1)[1])
        broker = TansuBroker(port, settings.data_dir / "logs" / "tansu.log")
        broker.start()
    wait_until_ready(settings.kafka_bootstrap)
    ensure_topics(settings)
    key, new = admin_key(settings)
    base = f"http://{settings.api_host}:{settings.api_port}"
    agent_key = settings.data_dir / AGENT_KEY_FILE
    running = children(settings, [*agent_args, "--api-url", base, "--ingest-key-file", str(agent_key)], key)
    try:
        api, others = running[0], running[1:]
        api.start()
        wait_for_api(base)
        ensure_agent_key(base, key, agent_key)
        for child in others:
            child.start()
        _say_how_to_authenticate(settings, key, new)
        supervise(running, broker, settings)
    except KeyboardInterrupt:
        log.info("stopping")
    finally:
        # a second Ctrl-C or SIGTERM must not cut the stop short (and leave the broker running):
        # it is bounded anyway, STOP_WITHIN_S and then SIGKILL
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_IGN)
        stop_all(running)
        if broker:
            broker.stop()


if __name__ == "__main__":
    main()
