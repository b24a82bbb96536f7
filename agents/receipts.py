"""A producer's view of the stored topic: which of its messages are stored."""

from __future__ import annotations

import logging

from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from meterline.kafka_config import consumer_config
from meterline.settings import Settings
from schemas.receipts import decode_receipt

log = logging.getLogger(__name__)
RECEIPTS_PER_POLL = 500


class ReceiptFeed:
    """Reads the stored topic from its end at start-up (what was stored before is found again by
    replaying the spool), and from its beginning after the broker lost it."""

    def __init__(self, settings: Settings, producer: str) -> None:
        self._producer = producer.encode()
        # the group is required by the client, and unused: partitions are assigned by hand, and
        # a broker that lost the topic has it again from 0, read from its beginning
        self._consumer = Consumer(consumer_config(settings, f"{settings.consumer_group}-receipts"))
        self._consumer.assign([TopicPartition(settings.topics.stored, 0, OFFSET_END)])

    def stored(self) -> list[int]:
        """Numbers of this producer's messages announced stored since the last call."""
        numbers: list[int] = []
        for message in self._consumer.consume(RECEIPTS_PER_POLL, timeout=0):
            if message.error() is not None or message.key() != self._producer:
                continue
            try:
                numbers.extend(decode_receipt(message.value() or b"").numbers())
            except ValueError as error:
                log.warning("ignoring an unreadable receipt: %s", error)
        return numbers

    def close(self) -> None:
        self._consumer.close()
