"""Split a batch into the events that honour their contract and the ones that do not."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from meterline.exceptions import InvalidEvent
from schemas.events import Event, decode_batch, validate_event


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


def split_valid(payload: bytes) -> tuple[list[Event], list[Rejection]]:
    """Validate every event of one message; a payload that is not JSON is one rejection."""
    try:
        candidates = decode_batch(payload)
    except InvalidEvent as error:
        return [], [Rejection(0, None, error.reason, payload.decode("utf-8", "replace"))]
    return split_events(candidates)


def split_events(candidates: list[Any]) -> tuple[list[Event], list[Rejection]]:
    accepted: list[Event] = []
    rejected: list[Rejection] = []
    for index, candidate in enumerate(candidates):
        try:
            accepted.append(validate_event(candidate))
        except InvalidEvent as error:
            rejected.append(Rejection(index, error.event_id, error.reason, candidate))
    return accepted, rejected
