"""Split messages into the events that honour their contract and the ones that do not.

A message is decoded and checked in one pass against the typed contract; only when something
in it is wrong is it taken apart event by event, so that each bad event gets its own reason
and the good ones of the same message still count. Each valid event keeps its JSON exactly as
it came, for the raw-events table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from meterline.exceptions import InvalidEvent
from schemas.events import UsageEvent, as_json_value, decode_event, decode_events, split_raw


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
    """Valid events with their JSON as received (``raw[i]`` is ``events[i]``), and the rest refused."""

    events: list[UsageEvent] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    def add(self, other: ValidEvents) -> None:
        self.events += other.events
        self.raw += other.raw
        self.rejected += other.rejected


def split_group(payloads: list[bytes]) -> ValidEvents:
    group = ValidEvents()
    for payload in payloads:
        group.add(split_message(payload))
    return group


def split_message(payload: bytes) -> ValidEvents:
    """The valid events of one message and a rejection for each other one."""
    try:
        candidates = split_raw(payload)
    except InvalidEvent as error:
        return ValidEvents(rejected=[Rejection(0, None, error.reason, payload.decode("utf-8", "replace"))])
    try:
        return ValidEvents(decode_events(payload), [bytes(raw) for raw in candidates])
    except InvalidEvent:
        pass
    result = ValidEvents()
    for index, candidate in enumerate(candidates):
        try:
            result.events.append(decode_event(candidate))
            result.raw.append(bytes(candidate))
        except InvalidEvent as error:
            result.rejected.append(Rejection(index, error.event_id, error.reason, as_json_value(candidate)))
    return result
