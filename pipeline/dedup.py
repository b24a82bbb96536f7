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

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from datetime import UTC
from decimal import Decimal
from enum import Enum

import msgspec
from msgspec import UNSET

from schemas.events import UsageEvent, VdcAllocationData, VmSampleData, XaasUsageData

Identity = str
"""``source`` and ``id`` in one string: a window of two million tuples would be two million
objects for the garbage collector to walk (it made the worker four times slower)."""


class Seen(Enum):
    NEW = "new"
    REPEAT = "repeat"
    CONFLICT = "conflict"


IDENTITY_SEPARATOR = "\x1f"
"""Between source and id: no source or id holds it (both are printable)."""


def identity(event: UsageEvent) -> Identity:
    return f"{event.source}{IDENTITY_SEPARATOR}{event.id}"


def content_digest(event: UsageEvent) -> int:
    """Equal for the same usage however it was written, hashed the same way in every process (it
    is stored, and the sink compares later copies with it): the event decoded and encoded again,
    its time as a UTC instant (``+01:00`` or ``Z``), an XaaS quantity as a number (``"10"``,
    ``"10.0"``, ``"010"``), and without what only labels it (resource name, hypervisor, disk
    device names, subject). What it bills - customer, resource, time, interval, figures - counts."""
    canonical = (event.time.astimezone(UTC), type(event).__name__, _billed(event.data))
    return int.from_bytes(hashlib.blake2b(msgspec.json.encode(canonical), digest_size=8).digest(), "little")


def _billed(data: VmSampleData | VdcAllocationData | XaasUsageData) -> object:
    if isinstance(data, VmSampleData):
        disks = [msgspec.structs.replace(disk, device=UNSET) for disk in data.disks]
        return msgspec.structs.replace(data, resource_name=UNSET, hypervisor=UNSET, disks=disks)
    if isinstance(data, XaasUsageData):
        return msgspec.structs.replace(data, resource_name=UNSET, quantity=str(Decimal(data.quantity).normalize()))
    return msgspec.structs.replace(data, resource_name=UNSET)


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
        known, batch = self._digests, dict[Identity, int]()
        verdicts = []
        for event in events:
            key, digest = identity(event), content_digest(event)
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
