"""A producer's view of the stored topic: which of its messages are stored."""

from __future__ import annotations

import logging
import time

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, TopicPartition

from meterline.kafka_config import consumer_config
from meterline.settings import Settings
from meterline.stalls import CHECK_EVERY_S, RECOVERIES, STALL_AFTER_S, past_the_end
from schemas.receipts import decode_receipt

log = logging.getLogger(__name__)
RECEIPTS_PER_POLL = 500


class ReceiptFeed:
    """Reads the stored topic from its end at start-up (what was stored before is found again by
    replaying the spool), and from its beginning after the broker lost it.

    It checks itself every ``CHECK_EVERY_S``: a position past the topic's end means the broker
    came back without the topic's log (the embedded broker keeps topics in memory), so it reads
    the new log from its beginning; receipts waiting and none read for ``STALL_AFTER_S`` means
    the client is stuck, so it is replaced at the same position. Without this, producers would
    keep everything they sent, and send it again every few minutes, for good."""

    def __init__(self, settings: Settings, producer: str) -> None:
        self._producer = producer.encode()
        self._settings = settings
        self._partition = TopicPartition(settings.topics.stored, 0)
        self._consumer = self._assigned(OFFSET_END)
        self._checked = self._read_at = time.monotonic()
        self._log_lost = False

    def stored(self) -> list[int]:
        """Numbers of this producer's messages announced stored since the last call."""
        numbers: list[int] = []
        for message in self._consumer.consume(RECEIPTS_PER_POLL, timeout=0):
            self._read_at = time.monotonic()
            if message.error() is not None or message.key() != self._producer:
                continue
            try:
                numbers.extend(decode_receipt(message.value() or b"").numbers())
            except ValueError as error:
                log.warning("ignoring an unreadable receipt: %s", error)
        if time.monotonic() - self._checked >= CHECK_EVERY_S:
            self._check()
        return numbers

    def log_lost(self) -> bool:
        """Whether the broker was found to have lost the stored topic's log since the last call:
        then it lost the events topic's too, with every batch delivered to it and not stored."""
        lost, self._log_lost = self._log_lost, False
        return lost

    def close(self) -> None:
        self._consumer.close()

    def _assigned(self, offset: int) -> Consumer:
        # the group is required by the client, and unused: the partition is assigned by hand
        consumer = Consumer(consumer_config(self._settings, f"{self._settings.consumer_group}-receipts"))
        consumer.assign([TopicPartition(self._partition.topic, 0, offset)])
        return consumer

    def _check(self) -> None:
        now = self._checked = time.monotonic()
        # the end the last fetch reported: the embedded broker's ListOffsets answers the start of
        # the last record batch, which a position inside that batch passes without anything lost
        try:
            _, high = self._consumer.get_watermark_offsets(self._partition, cached=True)
            (position,) = self._consumer.position([self._partition])
        except KafkaException:
            return  # a broker that does not answer tells nothing
        if past_the_end(position.offset, None, high):
            log.warning("the stored topic came back without its log; reading its receipts from the beginning")
            self._log_lost = True
            self._replace(OFFSET_BEGINNING)
        elif 0 <= position.offset < high and now - self._read_at >= STALL_AFTER_S:
            log.error("receipts wait and none was read for %.0f s; replacing the client", now - self._read_at)
            self._replace(position.offset)

    def _replace(self, offset: int) -> None:
        old, self._consumer = self._consumer, self._assigned(offset)
        self._read_at = time.monotonic()
        RECOVERIES.labels("receipts").inc()
        try:
            old.close()
        except (KafkaException, RuntimeError) as error:
            log.warning("the stuck receipts client did not close cleanly: %s", error)
