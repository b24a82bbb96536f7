"""Tell repeats and conflicts from new events, before they cost rating and storage work.

An event is known by its CloudEvents identity, (``source``, ``id``). The same identity with the
same content is a repeat (a re-sent message): it is counted once. With different content it is
a conflict: the later one is refused with the reason, never stored next to the first or in its
place.

This window is a fast first line, not the guarantee against double counting: it lives in one
worker's memory. That guarantee is storage itself: the sink looks every event's identity up
among those stored (``storage/identities.py``) and keeps the first copy, with the content digest
computed here. A conflict with an event that has left the window (or that another worker saw)
is caught there.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from enum import Enum

from schemas.events import UsageEvent
from schemas.identity import Identity, content_digest, identity


class Seen(Enum):
    NEW = "new"
    REPEAT = "repeat"
    CONFLICT = "conflict"


class RecentEvents:
    """The last ``capacity`` event identities with their content digests, oldest forgotten first."""

    def __init__(self, capacity: int = 2_000_000) -> None:
        self._capacity = capacity
        self._digests: OrderedDict[Identity, int] = OrderedDict()

    def sort(self, events: Iterable[UsageEvent]) -> tuple[list[Seen], dict[Identity, int]]:
        """Per event: new, a repeat or a conflict, against the window and the events before it;
        and the digests of the new ones.

        Nothing is remembered here: events are remembered (``remember``) only once the output
        that counts them has been sent, so a batch that fails half-way is not taken for a
        repeat when it comes again.
        """
        events = list(events)
        return self.sort_keys([identity(event) for event in events], [content_digest(event) for event in events])

    def sort_keys(self, keys: list[Identity], digests: list[int]) -> tuple[list[Seen], dict[Identity, int]]:
        """``sort`` for events known by their identities and content digests (columnar rows)."""
        known, batch = self._digests, dict[Identity, int]()
        verdicts = []
        for key, digest in zip(keys, digests, strict=True):
            earlier = batch.get(key, known.get(key))
            if earlier is None:
                batch[key] = digest
                verdicts.append(Seen.NEW)
            else:
                verdicts.append(Seen.REPEAT if earlier == digest else Seen.CONFLICT)
        return verdicts, batch

    def remember(self, digests: Mapping[Identity, int]) -> None:
        known = self._digests
        known.update(digests)
        while len(known) > self._capacity:
            known.popitem(last=False)
