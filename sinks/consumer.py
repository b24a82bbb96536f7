"""The loop that feeds a sink from Kafka and commits offsets only after each write."""

from __future__ import annotations

import logging
import threading
import time

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from meterline.kafka_config import client_logging
from meterline.settings import Settings
from sinks import metrics
from sinks.base import Sink

log = logging.getLogger(__name__)
LAG_REFRESH_S = 2.0
SESSION_TIMEOUT_MS = 10_000
# Everything a consume call returns is buffered before the next flush decision (the commit
# covers all of it), so this bounds how far a flush can overshoot the byte limit: a rated
# frame holds a worker's whole batch, some 4 MB once decoded.
CONSUME_MESSAGES = 20


class SinkConsumer:
    """Poll, buffer, flush, commit - in that order, in one thread.

    A flush failure is not retried here: the exception ends the loop with nothing committed,
    and the process exits so that its supervisor restarts it from the committed offsets.
    """

    def __init__(self, settings: Settings, sink: Sink) -> None:
        self._settings = settings
        self._sink = sink
        self._topics = sink.topics
        self._stop = threading.Event()
        self._consumer = Consumer(
            {
                **client_logging(),
                "bootstrap.servers": settings.kafka_bootstrap,
                "group.id": f"{settings.consumer_group}-sink",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                # a member that died without leaving holds its partitions this long: keep it short
                "session.timeout.ms": SESSION_TIMEOUT_MS,
                "heartbeat.interval.ms": SESSION_TIMEOUT_MS // 5,
                "fetch.max.bytes": 64 * 1024 * 1024,
                "max.partition.fetch.bytes": 16 * 1024 * 1024,
            }
        )
        self._last_flush = time.monotonic()
        self._last_lag = 0.0

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        self._consumer.subscribe(self._topics, on_revoke=self._on_revoke)
        try:
            while not self._stop.is_set():
                self.poll_once()
            self._flush_and_commit()
        finally:
            self._consumer.close()

    def poll_once(self) -> None:
        for message in self._consumer.consume(num_messages=CONSUME_MESSAGES, timeout=0.05):
            if self._is_error(message):
                continue
            self._sink.add(str(message.topic()), message.value() or b"")
        if flush_due(self._sink, time.monotonic() - self._last_flush, self._settings):
            self._flush_and_commit()
        if time.monotonic() - self._last_lag >= LAG_REFRESH_S:
            self._refresh_lag()

    def _flush_and_commit(self) -> None:
        self._last_flush = time.monotonic()
        if not self._sink.buffered_rows:
            return
        with metrics.FLUSH_SECONDS.time():
            result = self._sink.flush()
            self._consumer.commit(asynchronous=False)
        metrics.ROWS_WRITTEN.labels("raw_messages").inc(result.raw_messages)
        metrics.ROWS_WRITTEN.labels("usage_events").inc(result.usage_events)
        metrics.ROWS_WRITTEN.labels("rated_usage").inc(result.rated_rows)
        for seconds in result.freshness_s:
            metrics.FRESHNESS_SECONDS.observe(seconds)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._flush_and_commit()

    def _refresh_lag(self) -> None:
        self._last_lag = time.monotonic()
        lag: dict[str, int] = dict.fromkeys(self._topics, 0)
        for partition in self._consumer.position(self._consumer.assignment()):
            _, high = self._consumer.get_watermark_offsets(partition, timeout=1, cached=True)
            if partition.offset >= 0 and high >= 0:
                lag[partition.topic] += max(0, high - partition.offset)
        for topic, messages in lag.items():
            metrics.CONSUMER_LAG.labels(topic).set(messages)

    @staticmethod
    def _is_error(message: Message) -> bool:
        """True for an event the client reports in place of a message; fatal ones raise."""
        error = message.error()
        if error is None:
            return False
        if error.fatal():
            raise KafkaException(error)
        log.warning("sink consumer: %s", error)
        return True


def flush_due(sink: Sink, seconds_since_flush: float, settings: Settings) -> bool:
    """Flush on a timer, so that usage shows within seconds, or sooner once the buffer is full.

    Bytes count as well as rows: a received message is one row however many events it
    carries, and while the sink catches up on a backlog the timer alone would let it buffer
    hundreds of megabytes before a flush (and the insert copies them again).
    """
    return (
        seconds_since_flush >= settings.sink_flush_interval_s
        or sink.buffered_rows >= settings.sink_batch_max_rows
        or sink.buffered_bytes >= settings.sink_batch_max_bytes
    )
