"""Credit alerts and enforcement changes on Kafka: one JSON message each, keyed by customer so
one customer's messages stay in order. Sent from the outbox (``webhook_deliveries``) like any
other destination: at least once, each with a stable id (``webhook-id`` of the body) that a
consumer dedupes on."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from meterline.kafka_config import producer_config
from meterline.settings import Settings


class AlertTopics:
    def __init__(self, settings: Settings) -> None:
        self._config = {**producer_config(settings), "enable.idempotence": False}
        self._producer = Producer(self._config)
        self.names = {"alerts": settings.topics.alerts, "enforcement": settings.topics.enforcement}

    def publish(self, messages: list[tuple[str, str, bytes]], timeout_s: float = 10) -> set[int]:
        """Send ``(topic, key, body)`` messages at once and wait for the broker; the positions
        of those it did not acknowledge."""
        failed: set[int] = set()

        def delivered_as(position: int) -> Any:
            def delivered(error: KafkaError | None, _message: Any) -> None:
                if error is not None:
                    failed.add(position)

            return delivered

        for position, (topic, key, body) in enumerate(messages):
            try:
                self._producer.produce(self.names[topic], body, key=key.encode(), on_delivery=delivered_as(position))
                self._producer.poll(0)
            except (KafkaException, BufferError):
                failed.add(position)
        if self._producer.flush(timeout_s):
            self._producer = Producer(self._config)  # what it still holds counts as not sent
            return set(range(len(messages)))
        return failed
