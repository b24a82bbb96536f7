"""Gaps in a producer's message numbers, the hours they may hold, and the hours' status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from billing.completeness import Gap, HourStatus, StoredHour, gaps_touching, hour_statuses
from billing.periods import Period

T = datetime(2026, 11, 30, 22, 0, tzinfo=UTC)


def test_a_gap_holds_the_hours_between_the_usage_around_it():
    """Message 4 ended its usage at 23:00 (the 22:00 hour), message 6 starts at 23:00: 5 may
    hold usage of the 22:00 and 23:00 hours of 30 November, the last two of the month."""
    gap = Gap("agent/hv-1", 5, 5, after=T + timedelta(hours=1), before=T + timedelta(hours=1))
    assert gap.hours() == (T, T + timedelta(hours=1))
    assert gap.describe() == "agent/hv-1 messages 5, usage 2026-11-30T22:00Z to 2026-11-30T23:00Z"
    november, december, october = Period.parse("2026-11"), Period.parse("2026-12"), Period.parse("2026-10")
    assert gaps_touching([gap], november) == [gap]
    assert gaps_touching([gap], december) == [] and gaps_touching([gap], october) == []


def test_a_gap_with_no_usage_around_it_may_touch_any_period():
    gap = Gap("intake/api", 1, 3, after=None, before=None)
    assert gap.hours() is None
    assert gaps_touching([gap], Period.parse("2020-01")) == [gap]
    assert "messages 1-3, usage at an unknown time" in gap.describe()


def test_hours_are_complete_late_or_missing():
    """Usage of 22:00 stored at 23:30 is on time (an hour's grace), of 23:00 stored at 01:01 is
    late; the gap marks 21:00 missing."""
    stored = [
        StoredHour("agent/a", T, T + timedelta(hours=1, minutes=30)),
        StoredHour("agent/a", T + timedelta(hours=1), T + timedelta(hours=3, minutes=1)),
    ]
    gap = Gap("agent/a", 2, 2, after=T - timedelta(minutes=5), before=T - timedelta(minutes=50))
    statuses = hour_statuses(stored, [gap], late_after=timedelta(hours=1))
    assert statuses == {
        "agent/a": {
            T - timedelta(hours=1): HourStatus.MISSING,
            T: HourStatus.COMPLETE,
            T + timedelta(hours=1): HourStatus.LATE,
        }
    }
