"""Logging that stays readable while something keeps failing the same way.

A broker that is down makes every Kafka client report the same failed connection many times a
second (13,000 lines a minute were seen). ``RepeatsOnce`` lets the first of a kind through,
holds back its repeats for a minute, then lets one through again saying how many it held.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

WINDOW_S = 60.0
MAX_KINDS = 1_000
_NUMBERS = re.compile(r"\d+")


class RepeatsOnce(logging.Filter):
    """Passes a record unless one of the same kind (its text with numbers ignored) passed less
    than ``window_s`` ago.

    It remembers at most ``max_kinds`` kinds: past that, the kinds whose window is over are
    forgotten (with the count of repeats they held), so records whose text keeps changing in
    ways other than numbers cannot grow it without end."""

    def __init__(
        self, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic, max_kinds: int = MAX_KINDS
    ) -> None:
        super().__init__()
        self._window_s = window_s
        self._clock = clock
        self._max_kinds = max_kinds
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def __len__(self) -> int:
        """How many kinds of record it remembers."""
        return len(self._seen)

    def filter(self, record: logging.LogRecord) -> bool:
        kind = (record.name, _NUMBERS.sub("#", record.getMessage()))
        now = self._clock()
        passed_at, held = self._seen.get(kind, (float("-inf"), 0))
        if now - passed_at < self._window_s:
            self._seen[kind] = (passed_at, held + 1)
            return False
        if held:
            record.msg = f"{record.msg} (and {held} more like it in the last {self._window_s:.0f} s)"
        self._seen[kind] = (now, 0)
        if len(self._seen) > self._max_kinds:
            self._forget_before(now - self._window_s)
        return True

    def _forget_before(self, cutoff: float) -> None:
        self._seen = {kind: seen for kind, seen in self._seen.items() if seen[0] >= cutoff}


def quiet_repeats(*logger_names: str) -> None:
    """Hold back repeated records of these loggers and of every logger below them that exists
    now (a logger's filters see only its own records, not its children's): call it once the
    libraries are imported."""
    repeats = RepeatsOnce()
    names = [
        *logger_names,
        *(n for n in logging.root.manager.loggerDict if n.startswith(tuple(f"{p}." for p in logger_names))),
    ]
    for name in names:
        logging.getLogger(name).addFilter(repeats)


KAFKA_LOGGER = "meterline.kafka"
"""Where librdkafka's own log lines go (rather than straight to standard error)."""
