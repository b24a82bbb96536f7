"""Billing periods: calendar months in UTC, start inclusive and end exclusive, and day proration."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from meterline.exceptions import InvalidQuery, InvalidRange

PERIOD_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
_MONTH = re.compile(r"(?P<year>[0-9]{4})-(?P<month>0[1-9]|1[0-2])")
"""ASCII digits only, matched whole (``\d`` takes a full-width ２, and ``$`` a final newline)."""
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2299, 1, 1, tzinfo=UTC)
"""Usage and periods lie in [EARLIEST, LATEST): inside what storage's DateTime64 holds
(1900 to 2299), with room for the month a query looks back."""


def check_storable(name: str, value: datetime) -> None:
    if not EARLIEST <= value <= LATEST:
        raise InvalidRange(f"{name} {value.isoformat()} is outside {EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d}")


def check_window(start: datetime, end: datetime) -> None:
    """A query's ``[from, to)``: both with a UTC offset, in order, inside what storage holds."""
    for name, value in (("from", start), ("to", end)):
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidRange(f"'{name}' must carry a UTC offset, e.g. 2026-11-01T00:00:00Z")
        check_storable(f"'{name}'", value)
    if start >= end:
        raise InvalidRange("'from' must be before 'to'")


MOST_BUCKETS = 10_000
"""Buckets one usage or cost query may span (hours of a year and more, days of decades): a bigger
ask is refused rather than left to exhaust the server."""
BUCKET_SECONDS = {"hour": 3600, "day": 86_400, "month": 28 * 86_400}


def check_buckets(start: datetime, end: datetime, granularity: str) -> None:
    """A window of at most ``MOST_BUCKETS`` hours, days or months (``granularity``)."""
    if (end - start).total_seconds() / BUCKET_SECONDS[granularity] > MOST_BUCKETS:
        raise InvalidRange(
            f"at most {MOST_BUCKETS} {granularity}s per query: narrow the window or widen the granularity"
        )


MOST_POINTS = 1000


def bucket_ends(start: datetime, end: datetime, granularity: str) -> list[datetime]:
    """Where each hour, day or month (``granularity``) after ``start`` begins, up to ``end``
    (exclusive): the instants a burn-down shows. At most ``MOST_POINTS``."""
    step = {"hour": timedelta(hours=1), "day": timedelta(days=1)}.get(granularity)
    at = start.replace(minute=0, second=0, microsecond=0)
    if granularity != "hour":
        at = at.replace(hour=0)
    ends: list[datetime] = []
    while True:
        if step is not None:
            at += step
        else:
            at = Period.containing(at.date()).end
        if at >= end:
            return ends
        ends.append(at)
        if len(ends) > MOST_POINTS:
            raise InvalidRange(f"at most {MOST_POINTS} points: narrow the window or widen the granularity")


@dataclass(frozen=True, order=True)
class Period:
    first_day: date
    """The month's first day; the period runs from its midnight UTC to the next month's."""

    @classmethod
    def parse(cls, name: str) -> Period:
        match = _MONTH.fullmatch(name)
        if not match:
            raise InvalidQuery(f"period {name!r} is not a month written YYYY-MM")
        year = int(match["year"])
        if not EARLIEST.year <= year < LATEST.year:
            raise InvalidQuery(f"period {name!r} is outside {EARLIEST:%Y-%m} to {LATEST.year - 1}-12")
        return cls(date(year, int(match["month"]), 1))

    @classmethod
    def containing(cls, day: date) -> Period:
        return cls(day.replace(day=1))

    @property
    def name(self) -> str:
        return f"{self.first_day:%Y-%m}"

    @property
    def end_day(self) -> date:
        """The first day after the period."""
        return (self.first_day + timedelta(days=32)).replace(day=1)

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first_day, datetime.min.time(), UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.end_day, datetime.min.time(), UTC)

    @property
    def days(self) -> int:
        return (self.end_day - self.first_day).days

    def next(self) -> Period:
        return Period(self.end_day)

    def previous(self) -> Period:
        return Period.containing(self.first_day - timedelta(days=1))

    def days_active(self, start: date, end: date | None) -> int:
        """Days of the period within [start, end); a subscription ending on the 1st bills nothing."""
        first = max(start, self.first_day)
        last = min(end or self.end_day, self.end_day)
        return max((last - first).days, 0)

    def prorate(self, amount: Decimal, start: date, end: date | None) -> Decimal:
        """``amount`` for a whole period, scaled to the days a subscription was active in it."""
        return amount * self.days_active(start, end) / self.days
