"""Ship batches to Kafka without losing any: spool first, send, forget only on acknowledgement.

While the broker is down or slow, batches pile up in the spool; when it answers again they
are re-sent oldest first. A batch may be sent twice (acknowledged by the broker but killed
before its spool file was removed); its events keep their ids, so storage counts them once.

Order: while the broker answers, the idempotent producer keeps each source's batches in order.
A batch that timed out is re-sent after newer ones may have landed; nothing downstream
depends on arrival order (every sample is rated on its own), so that changes no figure.
"""

from __future__ import annotations

import logging
from functools import partial

from confluent_kafka import KafkaError, Message, Producer

from agents.spool import Spool, SpooledBatch

log = logging.getLogger(__name__)


class SpooledPublisher:
    def __init__(self, producer_config: dict[str, object], topic: str, spool: Spool) -> None:
        self._producer = Producer({**producer_config, "message.timeout.ms": 30_000})
        self._topic = topic
        self._spool = spool
        self._in_flight: set[int] = set()
        self._must_replay = True

    def publish(self, key: str, payload: bytes) -> None:
        """Durably accept one batch; it is sent now or, if the broker is away, later."""
        self.publish_group([(key, payload)])

    def publish_group(self, batches: list[tuple[str, bytes]]) -> None:
        """Durably accept several batches (a poll cycle) in one spool write, then send them."""
        for batch in self._spool.append_group([(key.encode(), payload) for key, payload in batches]):
            if self._must_replay or not self._send(batch):
                break

    def pump(self, timeout_s: float = 0.0) -> None:
        """Serve delivery reports, and re-send the spool once nothing is in flight."""
        self._producer.poll(timeout_s)
        if self._must_replay and not self._in_flight:
            self._replay()

    def drain(self, timeout_s: float) -> int:
        """Wait for everything spooled to be acknowledged; return how many batches remain."""
        self.pump()
        self._producer.flush(timeout_s)
        self.pump()
        self._producer.flush(timeout_s)
        return len(self._spool)

    @property
    def backlog(self) -> int:
        return len(self._spool)

    def _replay(self) -> None:
        self._must_replay = False
        for batch in self._spool.pending():
            if batch.seq not in self._in_flight and not self._send(batch):
                return

    def _send(self, batch: SpooledBatch) -> bool:
        try:
            self._producer.produce(
                self._topic, batch.payload, key=batch.key, on_delivery=partial(self._delivered, batch.seq)
            )
        except BufferError:
            self._must_replay = True
            return False
        self._in_flight.add(batch.seq)
        return True

    def _delivered(self, seq: int, error: KafkaError | None, _message: Message) -> None:
        self._in_flight.discard(seq)
        if error is None:
            self._spool.ack(seq)
            return
        log.warning("batch %d not delivered (%s); it stays spooled and will be re-sent", seq, error)
        self._must_replay = True
