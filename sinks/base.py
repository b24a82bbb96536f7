"""The sink contract: buffer messages, then write them durably in one flush.

The caller's order is fixed: ``add`` every consumed message, ``flush``, and only after
``flush`` returns commit the consumer offsets. A crash between the write and the commit
redelivers messages already written; the tables keep one row per event id, so that is safe.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from schemas.receipts import Handled, Headers


@dataclass(frozen=True)
class FlushResult:
    raw_messages: int
    usage_events: int
    rated_rows: int
    freshness_s: list[float]
    handled: list[Handled] = field(default_factory=list)
    """The numbered messages whose events this flush stored: producers may forget them."""
    dead_letters: int = 0
    repeated_events: int = 0
    """Usage events stored before (a redelivery): counted once, not written again."""
    conflicting_events: int = 0
    """Usage events whose identity was stored with other content: dead-lettered."""


class Sink(ABC):
    @abstractmethod
    def add(self, topic: str, payload: bytes, headers: Headers = None) -> None:
        """Buffer one message's payload; nothing is written yet."""

    @abstractmethod
    def flush(self) -> FlushResult:
        """Write everything buffered; raise if any of it could not be written."""

    def idle(self) -> None:  # noqa: B027 - most sinks have nothing to do then
        """Nothing is buffered: a moment to say so, if the sink keeps a mark of what it stored."""

    @property
    @abstractmethod
    def topics(self) -> list[str]:
        """The topics this sink reads."""

    @property
    @abstractmethod
    def buffered_rows(self) -> int:
        """How many rows wait in the buffer, to decide when to flush."""

    @property
    @abstractmethod
    def buffered_bytes(self) -> int:
        """How much memory the buffered messages take, to decide when to flush."""
