"""Notice a consumer that stops while messages wait for it, instead of waiting forever.

A broker that restarts under running clients can leave one that never resumes: a member the
group forgot that does not rejoin, a fetch that never returns, a position past the end of a log
that came back empty. Kafka does not restart its clients, so each consumer watches itself:

- stuck: per partition of its inputs, the group's committed offset against the log's end (read
  on the side, with a client of its own). A partition with messages waiting whose committed
  offset has not moved for ``stall_after_s`` is stuck; the consumer rejoins its group, or exits
  to be restarted, and says so in its health answer and ``meterline_consumer_stalled``.
- past the end: a consumer whose position (or committed offset) lies past the end its own
  fetches report reads a log the broker lost (the embedded broker keeps topics in memory, and
  answers a fetch past the end with nothing where Kafka answers an error that resets the
  client): it starts that partition again from the new log's beginning.

The end compared with committed offsets comes from the broker's offset listing, which the
embedded broker answers with the start of its last record batch: it may be below the true end
(never above), so a partition is judged waiting only when the listing is past the committed
offset, and "past the end" is judged only against the end a fetch reported.
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
    "meterline_consumer_stall_recoveries_total",
    "Times a consumer rejoined, exited or read a lost log again to get going",
    ["consumer"],
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
            waiting = high > at
            if not waiting or self._committed.get(partition) != at:
                self._since[partition] = now
            self._committed[partition] = at
            if waiting and now - self._since.get(partition, now) >= self.stall_after_s:
                stuck.add(partition)
        return stuck

    def restart(self, now: float) -> None:
        """A rejoin or restart gives every partition a new allowance."""
        self._since = dict.fromkeys(self._since, now)


def past_the_end(position: int | None, committed: int | None, fetched_end: int | None) -> bool:
    """Whether a consumer reads past the end of its partition's log: its position (or, before it
    has one, the offset committed for it) beyond the end its last fetch reported."""
    at = position if position is not None and position >= 0 else committed
    return at is not None and at >= 0 and fetched_end is not None and fetched_end >= 0 and at > fetched_end


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
        """The consumer rejoined: count it, and give it time to join before judging it again."""
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
