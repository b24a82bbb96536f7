"""Drop events whose id was seen recently, before they cost rating and storage work.

This window is a fast first line, not the guarantee: it lives in one worker's memory. The
guarantee is the storage itself, whose tables keep one row per event id (and meter) however
often the same event is written (see ``schemas/clickhouse.py``).
"""

from __future__ import annotations

from collections import OrderedDict

from schemas.events import Event


class RecentIds:
    """The last ``capacity`` event ids, oldest forgotten first."""

    def __init__(self, capacity: int = 2_000_000) -> None:
        self._capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def drop_seen(self, events: list[Event]) -> tuple[list[Event], int]:
        """The events not seen before (first copy wins) and how many were duplicates."""
        fresh: list[Event] = []
        for event in events:
            ident = event["id"]
            if ident in self._ids:
                continue
            self._ids[ident] = None
            fresh.append(event)
        while len(self._ids) > self._capacity:
            self._ids.popitem(last=False)
        return fresh, len(events) - len(fresh)
