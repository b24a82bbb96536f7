"""Notice a consumer that stops while messages wait for it, instead of waiting forever.

A broker that restarts under running clients can leave one that never resumes: a member the
group forgot that does not rejoin, a position past the end of a log that came back empty (the
embedded broker keeps topics in memory), a fetch that never returns. Kafka does not restart its
clients, so each consumer watches itself: per partition of its inputs, the group's committed
offset against the log's end, read from the broker on the side. A partition with messages
waiting whose committed offset has not moved for ``stall_after_s`` is stuck, and so at once is
one committed past its log's end (the broker lost the log: a restarted embedded broker answers a
fetch past the end with nothing, where Kafka answers an error that resets the client). The
consumer then rejoins, or exits to be restarted, and says so in its health answer and
``meterline_consumer_stalled``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaException, TopicPartition
from prometheus_client import Counter, Gauge

from meterline.kafka_config import consumer_config
from meterline.settings import Settings

log = logging.getLogger(__name__)
STALL_AFTER_S = 60.0
"""Longer than a rejoin after a broker restart takes (a session timeout, 10 s, and a rebalance)."""
REJOIN_GRACE_S = 30.0
"""After a consumer rejoined, how long it has to join and commit before it is judged again."""
CHECK_EVERY_S = 5.0

STALLED = Gauge(
    "meterline_consumer_stalled", "1 while a consumer has partitions stuck with messages waiting", ["consumer"]
)
RECOVERIES = Counter(
    "meterline_consumer_stall_recoveries_total", "Times a stuck consumer rejoined its group or exited", ["consumer"]
)

Partition = tuple[str, int]


@dataclass
class StuckPartitions:
    """Which partitions have had messages waiting, with no committed progress, for too long.

    Pure: it is told the committed offsets and the logs' ends at each check.
    """

    stall_after_s: float = STALL_AFTER_S
    _committed: dict[Partition, int] = field(default_factory=dict)
    _since: dict[Partition, float] = field(default_factory=dict)
    """Per partition, when it last had nothing waiting or its committed offset last moved."""

    def observe(
        self, ends: Mapping[Partition, tuple[int, int]], committed: Mapping[Partition, int], now: float
    ) -> set[Partition]:
        """``ends``: (low, high) watermark per partition; ``committed``: the group's offset (a
        partition missing or negative has none: it is read from ``low``)."""
        stuck = set()
        for partition, (low, high) in ends.items():
            offset = committed.get(partition, -1)
            at = offset if offset >= 0 else low
            if at > high:  # committed past the log's end: the broker lost the log, nothing will come
                stuck.add(partition)
                continue
            if at == high or self._committed.get(partition) != at:
                self._since[partition] = now
            self._committed[partition] = at
            if at != high and now - self._since.get(partition, now) >= self.stall_after_s:
                stuck.add(partition)
        return stuck

    def restart(self, now: float) -> None:
        """A rejoin or restart gives every partition a new allowance."""
        self._since = dict.fromkeys(self._since, now)


class GroupWatch:
    """Reads a group's committed offsets and its topics' watermarks from the broker, with a client
    of its own (it joins nothing), every ``CHECK_EVERY_S``, and tells which partitions are stuck."""

    def __init__(self, settings: Settings, group: str, topics: Iterable[str], name: str) -> None:
        self.name = name
        self._topics = list(topics)
        self._client = Consumer(consumer_config(settings, group))
        self._stuck = StuckPartitions()
        self._checked = self._grace_until = 0.0
        self._ends: dict[Partition, tuple[int, int]] = {}
        self._committed: dict[Partition, int] = {}
        self.stuck: set[Partition] = set()

    def check(self, clock: Callable[[], float] = time.monotonic) -> set[Partition]:
        """The stuck partitions, read again if ``CHECK_EVERY_S`` has passed (else as last read).
        A broker that does not answer tells nothing: a consumer waiting for it is not stuck."""
        now = clock()
        if now - self._checked < CHECK_EVERY_S or now < self._grace_until:
            return self.stuck
        self._checked = now
        try:
            ends, committed = self._read()
        except KafkaException as error:
            log.debug("%s: the broker did not answer the stall check: %s", self.name, error)
            return self.stuck
        self.stuck = self._stuck.observe(ends, committed, now)
        self._ends, self._committed = ends, committed
        STALLED.labels(self.name).set(1 if self.stuck else 0)
        return self.stuck

    def describe(self, partitions: set[Partition]) -> str:
        """``topic[n] (committed c, log l-h)`` for each: what an operator checks first."""
        return ", ".join(
            f"{topic}[{number}] (committed {self._committed.get((topic, number), -1)}, "
            f"log {'-'.join(map(str, self._ends.get((topic, number), ())))})"
            for topic, number in sorted(partitions)
        )

    def recovered(self) -> None:
        """The consumer rejoined: count it, and give it a new allowance."""
        RECOVERIES.labels(self.name).inc()
        self._grace_until = time.monotonic() + REJOIN_GRACE_S
        self._stuck.restart(self._grace_until)
        self.stuck = set()
        STALLED.labels(self.name).set(0)

    def close(self) -> None:
        self._client.close()

    def _read(self) -> tuple[dict[Partition, tuple[int, int]], dict[Partition, int]]:
        """Committed offsets first, then the logs' ends: read the other way round, a commit made in
        between could look past the end."""
        partitions = []
        metadata = self._client.list_topics(timeout=2)
        for topic in self._topics:
            described = metadata.topics.get(topic)
            if described is None or described.error is not None:
                continue
            partitions += [TopicPartition(topic, number) for number in described.partitions]
        committed = {(p.topic, p.partition): p.offset for p in self._client.committed(partitions, timeout=2)}
        ends = {
            (p.topic, p.partition): self._client.get_watermark_offsets(p, timeout=2, cached=False) for p in partitions
        }
        return ends, committed

    def lost_logs(self) -> dict[Partition, int]:
        """Of the stuck partitions, those committed past their log's end, with where the new log
        starts: what a member of the group commits before it restarts."""
        return {
            partition: self._ends[partition][0]
            for partition in self.stuck
            if partition in self._ends and self._committed.get(partition, -1) > self._ends[partition][1]
        }
