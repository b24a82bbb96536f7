"""Split messages into the events that honour their contract and the ones that do not.

A message is decoded and checked in one pass against the typed contract; only when something
in it is wrong is it taken apart event by event, so that each bad event gets its own reason
and the good ones of the same message still count. A valid event is known by its message and
the byte range it occupies there: messages are stored as received, so each event's JSON is kept
byte for byte without being copied out of its message on the way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from meterline.exceptions import InvalidEvent
from schemas.events import UsageEvent, as_json_value, decode_event, decode_events, event_spans
from schemas.records import message_id


@dataclass(frozen=True)
class Rejection:
    """An event refused with its reason; it goes to the dead-letter topic as it came."""

    index: int
    event_id: str | None
    reason: str
    event: Any

    def to_json(self) -> bytes:
        return orjson.dumps(
            {"index": self.index, "event_id": self.event_id, "reason": self.reason, "event": self.event},
            default=str,
        )


@dataclass
class ValidEvents:
    """Valid events with where each one lies in its message, and the rest refused.

    ``events[i]`` is the ``lengths[i]`` bytes at ``offsets[i]`` of message ``message_ids[i]``;
    ``messages`` holds those messages by id.
    """

    events: list[UsageEvent] = field(default_factory=list)
    message_ids: list[str] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    messages: dict[str, bytes] = field(default_factory=dict)

    def add(self, other: ValidEvents) -> None:
        self.events += other.events
        self.message_ids += other.message_ids
        self.offsets += other.offsets
        self.lengths += other.lengths
        self.rejected += other.rejected
        self.messages |= other.messages

    def keep(self, event: UsageEvent, ident: str, offset: int, length: int) -> None:
        self.events.append(event)
        self.message_ids.append(ident)
        self.offsets.append(offset)
        self.lengths.append(length)

    def select(self, keep: Iterable[bool]) -> ValidEvents:
        """The events where ``keep`` is true (their messages shared, rejections left behind)."""
        keep = list(keep)
        if all(keep):
            return ValidEvents(
                events=list(self.events),
                message_ids=list(self.message_ids),
                offsets=list(self.offsets),
                lengths=list(self.lengths),
                messages=self.messages,
            )
        kept = ValidEvents(messages=self.messages)
        origins = zip(self.events, self.message_ids, self.offsets, self.lengths, strict=True)
        for chosen, origin in zip(keep, origins, strict=True):
            if chosen:
                kept.keep(*origin)
        return kept

    def raw(self, index: int) -> bytes:
        """The JSON of ``events[index]`` exactly as it came."""
        offset = self.offsets[index]
        return self.messages[self.message_ids[index]][offset : offset + self.lengths[index]]


def split_group(payloads: list[bytes]) -> ValidEvents:
    group = ValidEvents()
    for payload in payloads:
        group.add(split_message(payload))
    return group


def split_message(payload: bytes) -> ValidEvents:
    """The valid events of one message and a rejection for each other one."""
    try:
        spans = event_spans(payload)
    except InvalidEvent as error:
        return ValidEvents(rejected=[Rejection(0, None, error.reason, payload.decode("utf-8", "replace"))])
    ident = message_id(payload)
    result = ValidEvents(messages={ident: payload})
    try:
        events = decode_events(payload)
    except InvalidEvent:
        events = []
    if events:
        result.events, result.message_ids = events, [ident] * len(events)
        result.offsets, result.lengths = [offset for offset, _ in spans], [length for _, length in spans]
        return result
    for position, (offset, length) in enumerate(spans):
        candidate = payload[offset : offset + length]
        try:
            result.keep(decode_event(candidate), ident, offset, length)
        except InvalidEvent as error:
            result.rejected.append(Rejection(position, error.event_id, error.reason, as_json_value(candidate)))
    return result
