"""The worker's lag gauge: messages after the last one read, per assigned partition."""

from __future__ import annotations

from faust.types import TP

from pipeline.app import unread_messages

EVENTS = "meterline.usage.events"


def test_lag_counts_the_messages_after_the_last_one_read():
    """End offsets are the next offset to be written: read 9 of end 10 means none left."""
    first, second, revoked, unread = (TP(EVENTS, n) for n in range(4))
    ends = {first: 10, second: 25, revoked: 50, unread: 7}
    reads = {first: 9, second: 4, revoked: 10}
    assert unread_messages([first, second, unread], ends, reads) == {first: 0, second: 20}
