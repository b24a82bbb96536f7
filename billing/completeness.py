"""Whether the usage of an hour has all arrived, from the numbers of the messages stored.

Every producer numbers its messages (``schemas/receipts.py``); a number missing between two
stored ones is a message sent and never stored: a gap. Its usage most likely lies between the
usage of its stored neighbours, so the gap marks those hours missing. An hour with stored
usage is complete, or late when some of it was stored well after the hour ended.

A period is closed only when no gap can touch it, unless the close is forced; a forced close
says so in its invoices' notes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from billing.periods import Period

HOUR = timedelta(hours=1)


class HourStatus(Enum):
    COMPLETE = "complete"
    LATE = "late"
    MISSING = "missing"


@dataclass(frozen=True)
class Gap:
    """Messages ``first_missing`` to ``last_missing`` of ``producer`` were sent and not stored.
    ``after``/``before``: the usage of the stored messages around them (None: none known)."""

    producer: str
    first_missing: int
    last_missing: int
    after: datetime | None
    before: datetime | None

    def hours(self) -> tuple[datetime, datetime] | None:
        """The first and last hour its usage may lie in, or None when nothing bounds it."""
        bounds = [_hour_ending(self.after)] if self.after else []
        bounds += [_hour_starting(self.before)] if self.before else []
        if not bounds:
            return None
        return min(bounds), max(bounds)

    def touches(self, period: Period) -> bool:
        hours = self.hours()
        return hours is None or (hours[0] < period.end and hours[1] + HOUR > period.start)

    def describe(self) -> str:
        numbers = f"{self.first_missing}" + (f"-{self.last_missing}" if self.last_missing != self.first_missing else "")
        hours = self.hours()
        where = "at an unknown time" if hours is None else f"{hours[0]:%Y-%m-%dT%H:00Z} to {hours[1]:%Y-%m-%dT%H:00Z}"
        return f"{self.producer} messages {numbers}, usage {where}"


@dataclass(frozen=True)
class StoredHour:
    """A producer's usage of one hour as stored: when the last of it arrived."""

    producer: str
    hour: datetime
    latest_stored: datetime


def hour_statuses(
    stored: Iterable[StoredHour], gaps: Iterable[Gap], late_after: timedelta
) -> dict[str, dict[datetime, HourStatus]]:
    """Per producer, each hour with stored usage or touched by a gap, with its status."""
    statuses: dict[str, dict[datetime, HourStatus]] = {}
    for hour in stored:
        late = hour.latest_stored > hour.hour + HOUR + late_after
        statuses.setdefault(hour.producer, {})[hour.hour] = HourStatus.LATE if late else HourStatus.COMPLETE
    for gap in gaps:
        span = gap.hours()
        if span is None:
            continue
        at = span[0]
        while at <= span[1]:
            statuses.setdefault(gap.producer, {})[at] = HourStatus.MISSING
            at += HOUR
    return statuses


def gaps_touching(gaps: Iterable[Gap], period: Period) -> list[Gap]:
    return [gap for gap in gaps if gap.touches(period)]


def _hour_starting(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _hour_ending(moment: datetime) -> datetime:
    """The hour of usage ending at ``moment``: an end on the hour is the hour before's."""
    return _hour_starting(moment - timedelta(milliseconds=1))
