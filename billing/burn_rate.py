"""The one burn-rate rule: how fast a customer spends, and where that leads.

The rate is the cost of the last ``RECENT_HOURS`` complete hours divided by the hours the
customer had usage in them: from the first complete hour that holds any of its usage to the
window's end. A customer 11 hours old is measured over 11 hours, not a week (it would look 15
times cheaper than it is); one with a quiet night or a weekly job keeps its idle hours in the
count, so a burst is not taken for its steady pace. Both the month-to-date forecast and the
moment prepaid credit runs out use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import TypeVar

from billing.money import round_exact

RECENT_HOURS = 168
HOUR = timedelta(hours=1)
RATE_STEP = Decimal("0.000001")
"""A rate per hour is shown to 6 places: 0.004 an hour shown as 0.00 would read as nothing."""
Key = TypeVar("Key")


@dataclass(frozen=True)
class RecentCost:
    """A customer's cost over the complete hours ``[window_start, window_end)``, and the first of
    those hours that holds any of its usage (None: none does)."""

    cost: Decimal
    first_usage_hour: datetime | None
    window_end: datetime

    @property
    def hours(self) -> int:
        """The hours the customer had usage in the window (0 when it had none)."""
        if self.first_usage_hour is None:
            return 0
        return max(1, int((self.window_end - self.first_usage_hour) / HOUR))

    def per_hour(self) -> Fraction:
        return Fraction(self.cost) / self.hours if self.hours else Fraction(0)


def rate_of(recent: Mapping[Key, RecentCost], key: Key) -> Fraction:
    """The rate per hour of ``key``'s recent cost (0: no recent cost)."""
    return recent[key].per_hour() if key in recent else Fraction(0)


def shown_rate(rate_per_hour: Fraction) -> Decimal:
    """A rate per hour as every report shows it: to ``RATE_STEP``, rounded once."""
    return round_exact(rate_per_hour, RATE_STEP)


def recent_window(now: datetime) -> tuple[datetime, datetime]:
    """The ``RECENT_HOURS`` complete hours before ``now``: ``[start, end)``."""
    end = now.replace(minute=0, second=0, microsecond=0)
    return end - RECENT_HOURS * HOUR, end


def forecast(so_far: Decimal, rate_per_hour: Fraction, now: datetime, until: datetime) -> Fraction:
    """Where ``so_far`` ends at ``until`` if ``rate_per_hour`` holds from ``now``."""
    hours_left = Fraction((until - now) // timedelta(milliseconds=1), 3_600_000)
    return Fraction(so_far) + rate_per_hour * max(hours_left, Fraction(0))


FORESEEABLE = timedelta(days=100 * 366)
"""Beyond this a run-out time is none at all: the credit outlasts any forecast."""


def runs_out_at(balance: Decimal, rate_per_hour: Fraction, now: datetime) -> datetime | None:
    """When ``balance`` reaches zero at ``rate_per_hour`` from ``now`` (now if it is not above
    zero; None if nothing is spent, or not within ``FORESEEABLE``), to the second."""
    if balance <= 0:
        return now
    if rate_per_hour <= 0:
        return None
    seconds = Fraction(balance) / rate_per_hour * 3600
    if seconds > FORESEEABLE.total_seconds():
        return None
    return now + timedelta(seconds=int(seconds))
