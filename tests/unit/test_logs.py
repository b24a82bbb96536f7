"""A failure that repeats is logged once a minute, with how many repeats were held back."""

from __future__ import annotations

import logging

from meterline.logs import RepeatsOnce


def record(message: str) -> logging.LogRecord:
    return logging.LogRecord("meterline.kafka", logging.ERROR, __file__, 1, message, None, None)


def test_repeats_of_a_failure_pass_once_a_minute_with_their_count():
    """13,000 failed connections in a minute (the ports and timings in them vary) give one line;
    the first of the next minute says it held back the other 12,999."""
    now = [0.0]
    repeats = RepeatsOnce(window_s=60, clock=lambda: now[0])
    passed = []
    for n in range(13_000):
        now[0] = n * 60 / 13_000
        line = record(f"Connect to ipv4#127.0.0.1:{19092 + n % 3} failed (after {n % 7}ms in state CONNECT)")
        if repeats.filter(line):
            passed.append(line.getMessage())
    assert len(passed) == 1
    now[0] = 60.0
    again = record("Connect to ipv4#127.0.0.1:19092 failed (after 0ms in state CONNECT)")
    assert repeats.filter(again) and again.getMessage().endswith("(and 12999 more like it in the last 60 s)")
    assert repeats.filter(record("Broker: topic not found")), "another kind of failure still gets through"


def test_kinds_whose_window_is_over_are_forgotten_past_the_limit():
    """A message whose text changes beyond its numbers is a new kind each time: 5,000 of them,
    one a second, leave the filter remembering at most its limit plus the last minute's."""
    now = [0.0]
    repeats = RepeatsOnce(window_s=60, clock=lambda: now[0], max_kinds=100)
    for n in range(5_000):
        now[0] = float(n)
        assert repeats.filter(record(f"request to broker {chr(65 + n % 26)}{chr(65 + n // 26 % 26)}x{n // 676}"))
    assert 60 <= len(repeats) <= 100 + 1
