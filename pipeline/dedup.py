"""Drop events whose id was seen recently, before they cost rating and storage work.

This window is a fast first line, not the guarantee: it lives in one worker's memory. The
guarantee is the storage itself, whose tables keep one row per event id (and meter) however
often the same event is written (see ``schemas/clickhouse.py``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable


class RecentIds:
    """The last ``capacity`` event ids, oldest forgotten first."""

    def __init__(self, capacity: int = 2_000_000) -> None:
        self._capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def first_seen(self, ids: Iterable[str]) -> list[bool]:
        """Per id: True the first time it is seen (also within ``ids``), False for a repeat."""
        known = self._ids
        mask = []
        for ident in ids:
            repeat = ident in known
            if not repeat:
                known[ident] = None
            mask.append(not repeat)
        while len(known) > self._capacity:
            known.popitem(last=False)
        return mask
