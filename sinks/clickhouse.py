"""Write received messages, accepted events and rated usage into ClickHouse (chDB or a server)."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from meterline.settings import Settings
from schemas import receipts
from schemas.receipts import Handled, Headers
from schemas.records import decode_frame, message_id
from sinks.base import FlushResult, Sink
from storage.clock import StoredThrough
from storage.identities import conflict_letter
from storage.received import ReceivedStore
from storage.usage_store import UsageStore


class ClickHouseSink(Sink):
    """Buffers the events, rated and dead-letter topics, then writes them in one flush.

    Messages of the events topic are kept whole, valid or not: an accepted event's JSON is read
    back from its message, and a refused one can be looked at as it came, with its reason from
    the dead-letter topic. Usage events are written first, since they are what the API shows,
    (the engine adds them to the rollups as it writes them); the numbers of the messages they came
    in last, since those tell producers to forget them.
    """

    def __init__(self, usage: UsageStore, received: ReceivedStore, marks: StoredThrough, settings: Settings) -> None:
        self._usage_store = usage
        self._received = received
        self._marks = marks
        self._marks.idle()  # before a first write: a close must not cut past what it will stamp
        topics = settings.topics
        self._events_topic, self._rated_topic, self._dead_letter_topic = topics.events, topics.rated, topics.dead_letter
        self._messages: list[bytes] = []
        self._usage: list[pa.Table] = []
        self._handled: list[Handled] = []
        self._dead_letters: list[bytes] = []
        self._rows = 0
        self._bytes = 0

    @property
    def topics(self) -> list[str]:
        return [self._events_topic, self._rated_topic, self._dead_letter_topic]

    def add(self, topic: str, payload: bytes, headers: Headers = None) -> None:
        if topic == self._events_topic:
            self._messages.append(payload)
            self._rows += 1
            self._bytes += len(payload)
        elif topic == self._rated_topic:
            if payload:
                table = decode_frame(payload)
                self._usage.append(table)
                self._rows += table.num_rows
                self._bytes += table.nbytes  # decoded, some five times the compressed frame
            self._handled += _handled(headers)
        elif topic == self._dead_letter_topic:
            self._dead_letters.append(payload)
            self._rows += 1
            self._bytes += len(payload)
        else:
            raise ValueError(f"the ClickHouse sink does not read topic {topic!r}")

    def idle(self) -> None:
        self._marks.idle()

    @property
    def buffered_rows(self) -> int:
        return self._rows + len(self._handled)

    @property
    def buffered_bytes(self) -> int:
        return self._bytes

    def flush(self) -> FlushResult:
        usage = pa.concat_tables(self._usage) if self._usage else None
        message_ids = [message_id(payload) for payload in self._messages]
        with self._marks.writing() as now:  # marked stored once all of the flush is written
            stored = self._usage_store.write(usage, now) if usage is not None else None
            if stored is not None and stored.conflicts.num_rows:
                received = dict(zip(message_ids, self._messages, strict=True))
                conflicts = zip(stored.conflicts.to_pylist(), stored.reasons, strict=True)
                self._dead_letters += [conflict_letter(event, reason, received) for event, reason in conflicts]
            if self._messages:
                self._received.messages(message_ids, self._messages, now)
            if self._dead_letters:
                self._received.dead_letters(self._dead_letters, now)
            if self._handled:
                self._received.stored(self._handled, now)
        written = stored.new if stored is not None else None
        written_at = datetime.now(UTC)
        result = FlushResult(
            raw_messages=len(self._messages),
            usage_events=0 if written is None else written.num_rows,
            rated_rows=0 if written is None else _rated_rows(written),
            freshness_s=[] if written is None else _seconds_since_end(written, written_at),
            handled=self._handled,
            dead_letters=len(self._dead_letters),
            repeated_events=0 if stored is None else stored.repeats.num_rows,
            conflicting_events=0 if stored is None else stored.conflicts.num_rows,
        )
        self._messages, self._usage, self._handled, self._dead_letters = [], [], [], []
        self._rows, self._bytes = 0, 0
        return result


def _rated_rows(usage: pa.Table) -> int:
    return int(pc.sum(pc.list_value_length(usage["rated.meter"])).as_py() or 0)


def _seconds_since_end(usage: pa.Table, written_at: datetime) -> list[float]:
    """How long ago each distinct interval end of the written events was, when they were written."""
    return [(written_at - end).total_seconds() for end in pc.unique(usage["usage_end"]).to_pylist()]


def _handled(headers: Headers) -> list[Handled]:
    value = receipts.header(headers, receipts.HANDLED)
    return receipts.decode_handled(value) if value else []
