"""The loop that feeds a sink from Kafka and commits offsets only after each write."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from meterline.exceptions import MeterlineError
from meterline.kafka_config import client_logging, consumer_config, producer_config
from meterline.settings import Settings
from meterline.stalls import CHECK_EVERY_S, RECOVERIES, GroupWatch, past_the_end
from schemas import receipts
from sinks import metrics
from sinks.base import Sink

log = logging.getLogger(__name__)
LAG_REFRESH_S = 2.0
SESSION_TIMEOUT_MS = 10_000
# Everything a consume call returns is buffered before the next flush decision (the commit
# covers all of it), so this bounds how far a flush can overshoot the byte limit: a rated
# frame holds a worker's whole batch, some 4 MB once decoded.
CONSUME_MESSAGES = 20
RECEIPT_TIMEOUT_MS = 10_000
T = TypeVar("T")


class ReceiptsNotSent(MeterlineError):
    """The broker did not take the stored receipts: offsets are not committed, so the messages
    are stored (harmlessly) again and announced then."""


class ReceiptAnnouncer:
    """Tells producers which of their messages are stored, on the stored topic."""

    def __init__(self, settings: Settings) -> None:
        self._topic = settings.topics.stored
        # not idempotent: a receipt sent twice or out of order is harmless, and an idempotent
        # client is fenced for good by a broker that restarts without its state
        self._producer = Producer(
            {
                **producer_config(settings),
                **client_logging(),
                "enable.idempotence": False,
                "message.timeout.ms": RECEIPT_TIMEOUT_MS,  # a failure comes back soon, to be sent again
            }
        )

    def announce(self, handled: list[receipts.Handled], stopping: threading.Event, within_s: float | None) -> None:
        """Send a receipt per producer, again until the broker takes each, or raise: when
        ``stopping`` is set, or after ``within_s``. A broker that is down holds the sink here
        (nothing can be consumed meanwhile either); the rest of the API goes on."""
        deadline = time.monotonic() + within_s if within_s is not None else float("inf")
        unsent = receipts.receipts_of(handled)
        while unsent:
            if stopping.is_set():
                raise ReceiptsNotSent("stopping before the broker took the stored receipts")
            failed: list[receipts.StoredReceipt] = []
            for receipt in unsent:
                self._producer.produce(
                    self._topic,
                    receipts.encode(receipt),
                    key=receipt.producer,
                    on_delivery=_on_failure(failed, receipt),
                )
            left = self._producer.flush(1.0)
            while left and not stopping.is_set() and time.monotonic() < deadline:
                left = self._producer.flush(1.0)
            if left or (failed and time.monotonic() >= deadline):
                raise ReceiptsNotSent(f"the broker did not take {len(unsent)} stored receipts in {within_s} s")
            if failed:
                log.warning("the broker did not take %d stored receipts; sending them again", len(failed))
            unsent = failed


def _on_failure(failed: list[T], item: T) -> Callable[[KafkaError | None, Message], None]:
    def report(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failed.append(item)

    return report


class SinkConsumer:
    """Poll, buffer, flush, announce, commit - in that order, in one thread.

    A flush failure is not retried here: the exception ends the loop with nothing committed,
    and the process exits so that its supervisor restarts it from the committed offsets.
    """

    def __init__(self, settings: Settings, sink: Sink) -> None:
        self._settings = settings
        self._sink = sink
        self._topics = sink.topics
        self._stop = threading.Event()
        self._group = f"{settings.consumer_group}-sink"
        self._consumer = self._joined()
        self._announcer = ReceiptAnnouncer(settings)
        self._watch = GroupWatch(settings, self._group, self._topics, "sink")
        self._last_flush = time.monotonic()
        self._last_lag = self._last_check = 0.0

    @property
    def stalled(self) -> bool:
        """Partitions of its inputs have had messages waiting, and no progress, for too long."""
        return bool(self._watch.stuck)

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        try:
            while not self._stop.is_set():
                self.poll_once()
            try:  # on the way out, a broker that is away holds the exit a moment only
                self._flush_and_commit(threading.Event(), announce_within_s=2.0)
            except (ReceiptsNotSent, KafkaException) as error:
                log.warning("stopping with stored messages not announced or committed: they will be (%s)", error)
        finally:
            self._consumer.close()
            self._watch.close()

    def poll_once(self) -> None:
        for message in self._consumer.consume(num_messages=CONSUME_MESSAGES, timeout=0.05):
            if self._is_error(message):
                continue
            self._sink.add(str(message.topic()), message.value() or b"", message.headers())
        if flush_due(self._sink, time.monotonic() - self._last_flush, self._settings):
            self._flush_and_commit()
        if time.monotonic() - self._last_lag >= LAG_REFRESH_S:
            self._refresh_lag()
        if time.monotonic() - self._last_check >= CHECK_EVERY_S:
            self._last_check = time.monotonic()
            self._restart_lost_logs()
        stuck = self._watch.check()
        if stuck and (not self._consumer.assignment() or stuck & _partitions(self._consumer.assignment())):
            self._rejoin(stuck)

    def _joined(self) -> Consumer:
        consumer = Consumer(
            {
                **consumer_config(self._settings, self._group),
                # a member that died without leaving holds its partitions this long: keep it short
                "session.timeout.ms": SESSION_TIMEOUT_MS,
                "heartbeat.interval.ms": SESSION_TIMEOUT_MS // 5,
                "fetch.max.bytes": 64 * 1024 * 1024,
                "max.partition.fetch.bytes": 16 * 1024 * 1024,
            }
        )
        consumer.subscribe(self._topics, on_revoke=self._on_revoke)
        return consumer

    def _rejoin(self, stuck: set[tuple[str, int]]) -> None:
        """Write what is buffered, then leave the group and join it again with a new client, which
        resumes from the committed offsets (what is written again is stored once). Nothing is
        committed on the way out: the stuck client's positions may lie past the end of a log the
        broker lost, and committing them would hide the new log's first messages."""
        log.error(
            "the sink made no progress on %d partitions with messages waiting (%s); joining its group again",
            len(stuck),
            self._watch.describe(stuck),
        )
        try:
            self._flush_and_commit(commit=False)
        finally:
            try:  # leave first: a member joining beside the stuck one waits on it to rejoin
                self._consumer.close()
            except (KafkaException, RuntimeError) as error:
                log.warning("the stuck client did not close cleanly: %s", error)
            self._consumer = self._joined()
            self._watch.recovered()

    def _flush_and_commit(
        self, stopping: threading.Event | None = None, announce_within_s: float | None = None, commit: bool = True
    ) -> None:
        if not self._sink.buffered_rows:
            self._last_flush = time.monotonic()
            self._sink.idle()
            return
        with metrics.FLUSH_SECONDS.time():
            result = self._sink.flush()
            if result.handled:
                self._announcer.announce(result.handled, stopping or self._stop, announce_within_s)
            if commit:
                self._commit()
        # the interval runs from the end of a flush: one that took longer than the interval is
        # followed by an interval's reading, not by a flush of what one poll brought, so a sink
        # behind writes fewer, larger flushes (each costs the engine a part per table to merge)
        self._last_flush = time.monotonic()
        metrics.ROWS_WRITTEN.labels("raw_messages").inc(result.raw_messages)
        metrics.ROWS_WRITTEN.labels("usage_events").inc(result.usage_events)
        metrics.ROWS_WRITTEN.labels("rated_usage").inc(result.rated_rows)
        metrics.EVENTS_SEEN_BEFORE.labels("repeat").inc(result.repeated_events)
        metrics.EVENTS_SEEN_BEFORE.labels("conflict").inc(result.conflicting_events)
        for seconds in result.freshness_s:
            metrics.FRESHNESS_SECONDS.observe(seconds)

    def _commit(self) -> None:
        """Commit what was written. A commit the group refuses (its member was forgotten, as by a
        broker that restarted) leaves those messages to be delivered again: written again, they
        are stored once, so the sink goes on."""
        try:
            self._consumer.commit(asynchronous=False)
        except KafkaException as error:
            if error.args[0].fatal():
                raise
            log.warning("the group did not take the sink's commit (%s); those messages come again", error.args[0])

    def _restart_lost_logs(self) -> None:
        """Read again from its beginning any partition this consumer reads past the end of: the
        broker lost the log it was at (see ``meterline.stalls``)."""
        assigned = self._consumer.assignment()
        if not assigned:
            return
        try:
            positions = self._consumer.position(assigned)
            committed = {(p.topic, p.partition): p.offset for p in self._consumer.committed(assigned, timeout=2)}
        except KafkaException:
            return  # a broker that does not answer tells nothing
        for partition in positions:
            _, fetched_end = self._consumer.get_watermark_offsets(partition, cached=True)
            key = (str(partition.topic), int(partition.partition))
            if past_the_end(partition.offset, committed.get(key), fetched_end):
                log.warning(
                    "%s[%d] is read at %d but its log ends at %d: the broker lost it; reading anew from its start",
                    partition.topic,
                    partition.partition,
                    partition.offset if partition.offset >= 0 else committed.get(key, -1),
                    fetched_end,
                )
                self._consumer.seek(TopicPartition(partition.topic, partition.partition, OFFSET_BEGINNING))
                RECOVERIES.labels("sink").inc()

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


def _partitions(assigned: list[TopicPartition]) -> set[tuple[str, int]]:
    return {(str(p.topic), int(p.partition)) for p in assigned}


def flush_due(sink: Sink, seconds_since_flush: float, settings: Settings) -> bool:
    """Flush on a timer, so that usage shows within seconds, or sooner once the buffer is full.

    Bytes count as well as rows: a received message is one row however many events it
    carries, and while the sink catches up on a backlog the timer alone would let it buffer
    hundreds of megabytes before a flush (and the insert copies them again).
    """
    return (
        seconds_since_flush >= settings.sink.flush_interval_s
        or sink.buffered_rows >= settings.sink.batch_max_rows
        or sink.buffered_bytes >= settings.sink.batch_max_bytes
    )
