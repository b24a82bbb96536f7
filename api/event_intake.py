"""Accept pushed usage events: validate each, publish the valid ones durably, report per event."""

from __future__ import annotations

import threading
from collections import defaultdict

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from api import metrics
from meterline.exceptions import InvalidEvent, MeterlineError
from meterline.kafka_config import client_logging, producer_config
from meterline.settings import Settings
from pipeline.validation import Acceptance, Rejection, split_message
from schemas.events import UsageEvent, batch_of, split_raw

DELIVERY_TIMEOUT_S = 10.0
POLL_S = 1.0


class PublishFailed(MeterlineError):
    """The broker did not confirm the batch; nothing of it may be reported as accepted."""


class EventIntake:
    def __init__(self, settings: Settings) -> None:
        self._topic = settings.topics.events
        self._producer = Producer({**producer_config(settings), **client_logging()})
        self._acceptance = Acceptance.of(settings)
        self._closed = threading.Event()
        # polled all the time, so that its log lines (a broker outage's) are handed over as they come
        threading.Thread(target=self._serve, name="intake-poll", daemon=True).start()

    def _serve(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(POLL_S)

    def submit(self, body: bytes) -> tuple[list[UsageEvent], list[Rejection]]:
        """Publish the valid events, one message per resource so that its events stay ordered."""
        if not split_raw(body):
            raise InvalidEvent("the batch is empty")
        checked = split_message(body, self._acceptance)
        accepted, rejected = checked.events, checked.rejected
        by_resource: dict[str, list[bytes]] = defaultdict(list)
        for index, event in enumerate(accepted):
            by_resource[event.data.resource_id].append(checked.raw(index))
        failures: list[KafkaError] = []

        def on_delivery(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                failures.append(error)

        for resource_id, raw_events in by_resource.items():
            self._producer.produce(self._topic, batch_of(raw_events), key=resource_id, on_delivery=on_delivery)
        if self._producer.flush(DELIVERY_TIMEOUT_S) or failures:
            raise PublishFailed(f"the broker did not confirm the events: {failures or 'timed out'}")
        metrics.PUSHED_ACCEPTED.inc(len(accepted))
        metrics.PUSHED_REJECTED.inc(len(rejected))
        return accepted, rejected

    def broker_reachable(self, timeout_s: float = 1.0) -> bool:
        """Whether the broker answers a metadata request now."""
        try:
            self._producer.list_topics(self._topic, timeout=timeout_s)
        except KafkaException:
            return False
        return True

    def close(self) -> None:
        self._closed.set()
        self._producer.flush(DELIVERY_TIMEOUT_S)
