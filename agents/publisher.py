"""Ship batches to Kafka without losing any: spool first, send, forget only once stored.

A batch leaves the spool when the sink announces it stored (``schemas/receipts.py``), not when
the broker acknowledges it: a broker can acknowledge and then lose its log (the embedded one
keeps topics in memory). Until then it is sent again when

- the broker refuses or times out its delivery;
- the stored topic's log is found restarted (``ReceiptFeed``): the broker lost its logs, and
  with them every batch delivered and not stored yet;
- a batch delivered after it to the same partition is stored and it is not, and it stays so for
  ``OVERTAKEN_GRACE_S``: a partition is read in order, so the broker lost it (a restarted embedded
  broker starts its partitions again from offset 0: offsets cannot tell, delivery times can). A
  partition's rated output reaches storage through the rated partition of the same number, in
  order (``pipeline.processing.rated_parts``); the grace covers what can still reorder it (a
  partition moving between workers, a retried send), and counts from when the batch was
  overtaken, not from its delivery, so that a backlog of more than the grace is no loss;
- it is not stored ``RESEND_AFTER_S`` after its delivery and nothing else of this producer was
  stored meanwhile (a producer that sends nothing more after a broker loss). While receipts keep
  coming, a batch not stored yet is only behind in a backlog, and is not sent again.

A batch may so be sent twice, or be in the spool when the agent is killed and replayed at
start; its events keep their ids, and the pipeline and storage keep each event once.

Order: while the broker answers, the idempotent producer keeps each source's batches in order.
A batch sent again lands after newer ones; nothing downstream depends on arrival order (every
sample is rated on its own), so that changes no figure.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from agents.receipts import ReceiptFeed
from agents.spool import Spool, SpooledBatch
from meterline.kafka_config import client_logging, producer_config
from meterline.settings import Settings
from schemas import columnar
from schemas.receipts import headers_of

log = logging.getLogger(__name__)
CHECK_EVERY_S = 5.0
OVERTAKEN_GRACE_S = 30.0
RESEND_AFTER_S = 120.0
CLIENT_FENCED = {
    KafkaError.PRODUCER_FENCED,
    KafkaError.UNKNOWN_PRODUCER_ID,
    KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
    KafkaError.INVALID_PRODUCER_EPOCH,
}
"""Errors after which an idempotent producer never delivers again."""
CLIENT_STUCK = {KafkaError._MSG_TIMED_OUT}
"""A batch not delivered within ``message.timeout.ms``. After a broker restarted without its state,
an idempotent client can wait for a producer id it never gets and time out every batch while
the broker answers again: a new client delivers them, and replacing one while the broker is
really away costs nothing."""


@dataclass(frozen=True)
class Delivered:
    """Which partition the broker put a batch in, and when (monotonic seconds): offsets are not
    kept, they tell nothing once a broker restarts its partitions from 0."""

    partition: int
    at: float


class SpooledPublisher:
    """Thread-safe: the API's request threads publish while its poll thread pumps."""

    def __init__(
        self,
        settings: Settings,
        producer: str,
        spool: Spool,
        more_headers: Callable[[], list[tuple[str, bytes]]] = list,
    ) -> None:
        """``more_headers`` gives headers to add to each batch as it is sent (or sent again)."""
        self.producer = producer
        self._more_headers = more_headers
        self._config = {
            **producer_config(settings),
            **client_logging(),
            "message.timeout.ms": 30_000,
            "error_cb": self._client_error,
        }
        self._producer = Producer(self._config)
        self._generation = 0  # of the client: reports of a replaced one are ignored
        self._client_failed = False
        self._undelivered: list[KafkaError] = []
        self._topic = settings.topics.events
        self._spool = spool
        self._receipts = ReceiptFeed(settings, producer)
        self._lock = threading.RLock()
        self._in_flight: set[int] = set()
        self._delivered: dict[int, Delivered] = {}
        self._stored_up_to: dict[int, float] = {}  # per partition, the latest delivery of a batch stored
        self._overtaken: dict[int, float] = {}  # when each delivered batch was first seen overtaken
        self._last_receipt = self._last_check = time.monotonic()
        self._must_replay = True

    def publish(self, key: str, payload: bytes) -> None:
        """Durably accept one batch; it is sent now or, if the broker is away, later."""
        self.publish_group([(key, payload)])

    def publish_group(self, batches: list[tuple[str, bytes]]) -> None:
        """Durably accept several batches (a poll cycle) in one spool write, then send them."""
        with self._lock:
            for batch in self._spool.append_group([(key.encode(), payload) for key, payload in batches]):
                if self._must_replay or not self._send(batch):
                    break

    def pump(self, timeout_s: float = 0.0) -> None:
        """Serve delivery reports and receipts, and re-send what must be once nothing is in flight."""
        try:
            self._producer.poll(timeout_s)  # delivery reports take the lock themselves
        except KafkaException as error:
            self._client_error(error.args[0])
        with self._lock:
            if self._undelivered:
                log.warning(
                    "%d batches not delivered (%s); they stay spooled and will be sent again",
                    len(self._undelivered),
                    self._undelivered[-1],
                )
                self._undelivered = []
            if self._client_failed:
                self._replace_client()
            for seq in self._receipts.stored():
                self._stored(seq)
            if self._receipts.log_lost():
                self._forget_delivered()
            if time.monotonic() - self._last_check >= CHECK_EVERY_S:
                self._forget_lost()
            if self._must_replay and not self._in_flight:
                self._replay()

    def drain(self, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` for everything spooled to be stored; return how many batches remain."""
        deadline = time.monotonic() + timeout_s
        while self.backlog and time.monotonic() < deadline:
            self.pump(0.1)
        return self.backlog

    def flush(self, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` for the broker to acknowledge everything; return how many
        batches it has not (they are still kept until stored)."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.pump(0.1)
            with self._lock:
                unsent = len(self._spool) - len(self._delivered)
            if not unsent or time.monotonic() >= deadline:
                return unsent

    @property
    def backlog(self) -> int:
        """Batches not stored yet."""
        return len(self._spool)

    @property
    def backlog_bytes(self) -> int:
        return self._spool.size_bytes

    def broker_reachable(self, timeout_s: float = 1.0) -> bool:
        """Whether the broker answers a metadata request now."""
        try:
            self._producer.list_topics(self._topic, timeout=timeout_s)
        except KafkaException:
            return False
        return True

    def close(self) -> None:
        self._producer.flush(1.0)
        self._receipts.close()

    def _client_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._client_failed = True

    def _replace_client(self) -> None:
        """A new client for one that cannot go on: an idempotent producer is fenced for good by
        a broker that restarted without its state. What it had in flight is sent again."""
        log.warning("the Kafka client failed for good or timed out its batches; replacing it")
        self._client_failed = False
        self._generation += 1
        self._producer = Producer(self._config)
        self._in_flight.clear()
        self._must_replay = True

    def _stored(self, seq: int) -> None:
        self._spool.ack(seq)
        self._last_receipt = time.monotonic()
        delivered = self._delivered.pop(seq, None)
        self._overtaken.pop(seq, None)
        if delivered is not None:
            latest = self._stored_up_to.get(delivered.partition, delivered.at)
            self._stored_up_to[delivered.partition] = max(latest, delivered.at)

    def _forget_lost(self) -> None:
        """Take back, to be sent again, the delivered batches the broker lost."""
        now = self._last_check = time.monotonic()
        note_overtaken(self._delivered, self._stored_up_to, self._overtaken, now)
        lost = lost_batches(self._delivered, self._overtaken, self._last_receipt, now)
        if lost:
            log.warning("%d delivered batches are not stored; sending them again", len(lost))
            for seq in lost:
                del self._delivered[seq]
                self._overtaken.pop(seq, None)
            self._must_replay = True

    def _forget_delivered(self) -> None:
        """The broker lost its logs: every batch delivered and not stored is sent again now,
        rather than when later ones overtake it or receipts stay quiet (``lost_batches``)."""
        if self._delivered:
            log.warning(
                "the broker lost its log; sending the %d delivered batches not stored again", len(self._delivered)
            )
            self._delivered.clear()
            self._overtaken.clear()
            self._must_replay = True

    def _replay(self) -> None:
        self._must_replay = False
        for batch in self._spool.pending():
            if batch.seq not in self._in_flight and batch.seq not in self._delivered and not self._send(batch):
                return

    def _send(self, batch: SpooledBatch) -> bool:
        try:
            self._producer.produce(
                self._topic,
                batch.payload,
                key=batch.key,
                headers=[
                    *headers_of(self.producer, batch.seq),
                    *self._more_headers(),
                    *_content_headers(self.producer, batch),
                ],
                on_delivery=partial(self._delivery_report, self._generation, batch.seq),
            )
        except BufferError:
            self._must_replay = True
            return False
        self._in_flight.add(batch.seq)
        return True

    def _delivery_report(self, generation: int, seq: int, error: KafkaError | None, message: Message) -> None:
        with self._lock:
            if generation != self._generation:
                return
            self._in_flight.discard(seq)
            if error is None:
                self._delivered[seq] = Delivered(message.partition() or 0, time.monotonic())
                return
            self._undelivered.append(error)
            self._client_failed |= error.fatal() or error.code() in CLIENT_FENCED | CLIENT_STUCK
            self._must_replay = True


def _content_headers(producer: str, batch: SpooledBatch) -> list[tuple[str, bytes]]:
    """A columnar batch travels as a binary-mode CloudEvent; a JSON one is its own envelope."""
    if not columnar.is_columnar(batch.payload):
        return []
    return columnar.binary_headers(producer, f"{producer}/{batch.seq}")


def note_overtaken(
    delivered: Mapping[int, Delivered], stored_up_to: Mapping[int, float], overtaken: dict[int, float], now: float
) -> None:
    """Note ``now`` for each delivered batch a later batch of its partition overtook (was stored
    first) since the last look: ``stored_up_to`` is, per partition, the latest delivery time of a
    batch stored."""
    for seq, batch in delivered.items():
        if seq not in overtaken and stored_up_to.get(batch.partition, batch.at) > batch.at:
            overtaken[seq] = now


def lost_batches(
    delivered: Mapping[int, Delivered], overtaken: Mapping[int, float], last_receipt: float, now: float
) -> list[int]:
    """The delivered batches to send again (the rules are in the module's documentation):
    ``overtaken`` says since when each overtaken batch has been."""
    quiet = now - last_receipt >= RESEND_AFTER_S
    return [
        seq
        for seq, batch in delivered.items()
        if (seq in overtaken and now - overtaken[seq] >= OVERTAKEN_GRACE_S)
        or (quiet and now - batch.at >= RESEND_AFTER_S)
    ]
