"""When the sink flushes: on its timer, or as soon as its buffer is full."""

from __future__ import annotations

import pytest

from meterline.settings import Settings, SinkSettings
from sinks.base import FlushResult, Sink
from sinks.consumer import flush_due

SETTINGS = Settings(sink=SinkSettings(flush_interval_s=0.25, batch_max_rows=1_000, batch_max_bytes=1_000_000))


class Buffer(Sink):
    """A sink holding ``rows`` rows in ``size`` bytes, for the flush rule alone."""

    def __init__(self, rows: int, size: int) -> None:
        self.rows, self.size = rows, size

    def add(self, topic: str, payload: bytes) -> None:
        raise NotImplementedError

    def flush(self) -> FlushResult:
        raise NotImplementedError

    @property
    def topics(self) -> list[str]:
        return []

    @property
    def buffered_rows(self) -> int:
        return self.rows

    @property
    def buffered_bytes(self) -> int:
        return self.size


@pytest.mark.parametrize(
    ("rows", "size", "seconds_since_flush", "due"),
    [
        (10, 50_000, 0.1, False),  # a little, recently flushed: wait for the timer
        (10, 50_000, 0.25, True),  # the timer
        (1_000, 50_000, 0.1, True),  # enough rows
        (3, 1_000_000, 0.1, True),  # a few messages, but large ones: a backlog being caught up
    ],
)
def test_the_sink_flushes_on_its_timer_or_a_full_buffer(rows: int, size: int, seconds_since_flush: float, due: bool):
    assert flush_due(Buffer(rows, size), seconds_since_flush, SETTINGS) is due
