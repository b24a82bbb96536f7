"""Credit alerts and enforcement changes on Kafka: one JSON message each, keyed by customer so
one customer's messages stay in order. Sent from the outbox (``webhook_deliveries``) like any
other destination: at least once, each with a stable id (``webhook-id`` of the body) that a
consumer dedupes on."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from meterline.kafka_config import producer_config
from meterline.settings import Settings


class TopicNotReached(Exception):
    """The broker did not acknowledge the message; the outbox sends it again."""


class AlertTopics:
    def __init__(self, settings: Settings) -> None:
        self._config = {**producer_config(settings), "enable.idempotence": False}
        self._producer = Producer(self._config)
        self.names = {"alerts": settings.topics.alerts, "enforcement": settings.topics.enforcement}

    def publish(self, topic: str, key: str, body: bytes, timeout_s: float = 10) -> None:
        """Send and wait for the broker's acknowledgement."""
        failures: list[str] = []

        def delivered(error: KafkaError | None, _message: Any) -> None:
            if error is not None:
                failures.append(str(error))

        try:
            self._producer.produce(self.names[topic], body, key=key.encode(), on_delivery=delivered)
        except (KafkaException, BufferError) as error:
            self._producer = Producer(self._config)
            raise TopicNotReached(str(error)) from error
        if self._producer.flush(timeout_s) or failures:
            self._producer = Producer(self._config)
            raise TopicNotReached(f"{failures[:1] or 'timed out'}")
