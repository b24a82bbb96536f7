"""An event's identity and its content digest: what every stage tells events apart by.

An event is known by its CloudEvents (``source``, ``id``). The same identity with the same
content (digest) is a repeat; with other content, a conflict. The intake, the stream's window
(``pipeline.dedup``) and storage (``storage.identities``) all decide with these.
"""

from __future__ import annotations

import hashlib
from datetime import UTC
from decimal import Decimal

import msgspec
import polars as pl
from msgspec import UNSET

from schemas.events import UsageEvent, VdcAllocationData, VmSampleData, XaasUsageData

Identity = str
"""``source`` and ``id`` in one string: a window of two million tuples would be two million
objects for the garbage collector to walk (it made the worker four times slower)."""


IDENTITY_SEPARATOR = "\x1f"
"""Between source and id: no source or id holds it (both are printable)."""
ROW_IDENTITY = pl.concat_str([pl.col("source"), pl.lit(IDENTITY_SEPARATOR), pl.col("id")])
"""A row's identity (its ``source`` and ``id`` columns), as ``identity`` writes an event's."""


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
