"""How far back a catalog change reaches: the earliest instant whose billing it changes.

An issued invoice is never edited, and usage is rated once, as it arrives. A price, fee,
subscription or one-time charge changed with a date inside a month already issued would
re-price that month at its next late-usage adjustment, and leave the amounts the stream rated
for it at the old price: such a change is refused (``CatalogAdmin``). The dated parts of
entries are compared here; a change to undated fields (a name, an address, a discount) takes
effect from the next close.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import orjson

from billing.catalog_entries import EntryKind

Document = dict[str, Any] | None


def earliest_effect(kind: EntryKind, before: Document, after: Document) -> datetime | None:
    """The earliest instant whose billing differs between the two versions of an entry (None:
    no dated part differs). ``None`` as a version is an entry that does not exist."""
    if before == after:
        return None
    if kind in (EntryKind.PRICE_LIST, EntryKind.CUSTOMER):
        changed = _differing(before, after, "plans") + _differing(before, after, "fees")
        return min((_instant(item["effective_from"]) for item in changed), default=None)
    if kind is EntryKind.SUBSCRIPTION:
        return _subscription_change(before, after)
    if kind is EntryKind.ONE_TIME_CHARGE:
        return min((_instant(version["day"]) for version in (before, after) if version), default=None)
    return None


def _differing(before: Document, after: Document, field: str) -> list[dict[str, Any]]:
    """The items of a list field that one version has and the other has not."""
    old = {_canonical(item): item for item in (before or {}).get(field, [])}
    new = {_canonical(item): item for item in (after or {}).get(field, [])}
    return [item for key, item in (old | new).items() if (key in old) != (key in new)]


def _subscription_change(before: Document, after: Document) -> datetime | None:
    """From its start when anything but its end changed; else from the earlier of the two ends."""
    versions = [version for version in (before, after) if version]
    if before and after and {**before, "end": None} == {**after, "end": None}:
        ends = [_instant(version["end"]) for version in versions if version.get("end")]
        return min(ends) if len(ends) == 2 else (ends[0] if ends else None)
    return min(_instant(version["start"]) for version in versions)


def _canonical(item: dict[str, Any]) -> bytes:
    return orjson.dumps(item, option=orjson.OPT_SORT_KEYS)


def _instant(value: str) -> datetime:
    """A document's date (midnight UTC) or time (with its offset), as an instant."""
    if "T" not in value:
        return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
