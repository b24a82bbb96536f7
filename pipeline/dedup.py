"""Drop events whose id was seen recently, before they cost rating and storage work.

This window is a fast first line, not the guarantee: it lives in one worker's memory. The
guarantee is the storage itself, which keeps one row per event id however often the same
event is written (see ``schemas/clickhouse.py``).
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
        """Per id: True unless it was remembered before or comes earlier in ``ids``.

        Nothing is remembered here: an id is remembered (``remember``) only once the output
        that counts it has been sent, so a batch that fails half-way is not taken for a repeat
        when it comes again.
        """
        ids = list(ids)
        known, batch = self._ids, set(ids)
        if len(batch) == len(ids) and known.keys().isdisjoint(batch):
            return [True] * len(ids)  # the usual batch, checked by set operations alone
        batch.clear()
        mask = []
        for ident in ids:
            mask.append(ident not in known and ident not in batch)
            batch.add(ident)
        return mask

    def remember(self, ids: Iterable[str]) -> None:
        known = self._ids
        for ident in ids:
            known[ident] = None
        while len(known) > self._capacity:
            known.popitem(last=False)
