"""Which parts of a usage window are read from days, hours and events: cases worked by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from storage.usage_read import UsageRead, plan


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def test_a_window_of_days_reads_whole_days_then_hours_then_its_edges_from_the_events():
    window = plan(UsageRead(at(2, 10, 17), at(5, 2, 43), by_day=True))
    # events 10:17-11:00 on the 2nd; hours 11:00-24:00; days the 3rd and 4th; hours 00-02 on
    # the 5th; events 02:00-02:43
    assert (window.hour_lo, window.hour_hi) == (at(2, 11), at(5, 2))
    assert (window.day_lo, window.day_hi) == (at(3, 0), at(5, 0))
    assert (window.reads_days, window.reads_hours, window.reads_events) == (True, True, True)


def test_by_the_hour_no_day_rows_are_read():
    window = plan(UsageRead(at(2, 10, 17), at(5, 2, 43)))
    assert window.day_lo == window.day_hi == at(5, 2)
    assert (window.reads_days, window.reads_hours, window.reads_events) == (False, True, True)


def test_a_window_of_whole_days_reads_only_day_rows():
    window = plan(UsageRead(at(2, 0), at(3, 0), by_day=True))
    assert (window.day_lo, window.day_hi) == (at(2, 0), at(3, 0))
    assert (window.reads_days, window.reads_hours, window.reads_events) == (True, False, False)


def test_an_hour_cut_inside_is_read_from_the_events_and_its_day_from_the_hours():
    """A price change at 14:30 on the 2nd: that hour from the events, the 2nd's other hours from
    the hour rows, the 1st and 3rd from day rows. A cut on a whole hour, or outside, changes nothing."""
    cuts = (at(2, 14, 30), at(2, 15), at(9, 9, 9))
    window = plan(UsageRead(at(1, 0), at(4, 0), cuts=cuts, by_day=True))
    assert window.raw_hours == (at(2, 14),)
    assert window.raw_days == (at(2, 0),)
    assert (window.day_lo, window.day_hi) == (at(1, 0), at(4, 0))
    assert (window.reads_days, window.reads_hours, window.reads_events) == (True, True, True)


def test_what_was_stored_by_a_cutoff_is_read_by_the_hour_and_from_later_events():
    window = plan(UsageRead(at(1, 0), at(4, 0), stored_by=at(5, 9), by_day=True))
    assert window.day_lo == window.day_hi, "a day row cannot tell what was stored by a time"
    assert (window.reads_days, window.reads_hours, window.reads_events) == (False, True, True)


def test_a_window_inside_one_hour_is_all_events():
    window = plan(UsageRead(at(2, 10, 5), at(2, 10, 50), by_day=True))
    assert (window.hour_lo, window.hour_hi) == (at(2, 11), at(2, 10))
    assert (window.reads_days, window.reads_hours, window.reads_events) == (False, False, True)


def test_instants_in_another_zone_are_planned_in_utc():
    paris = timezone(timedelta(hours=1))
    window = plan(UsageRead(datetime(2026, 11, 2, 1, 30, tzinfo=paris), at(3, 0), by_day=True))
    assert window.start == at(2, 0, 30) and window.hour_lo == at(2, 1)


def on(month: int, day: int, hour: int = 0, minute: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_a_window_by_month_reads_whole_months_then_days_then_hours_then_events():
    """10 Sep 2026 06:30 to 3 Jan 2027 00:00: events 06:30-07:00 on the 10th; hours 07-24; days
    the 11th to the 30th of September; months October to December; days 1-2 January."""
    window = plan(UsageRead(on(9, 10, 6, 30), on(1, 3, year=2027), by_day=True, by_month=True))
    assert (window.hour_lo, window.hour_hi) == (on(9, 10, 7), on(1, 3, year=2027))
    assert (window.day_lo, window.day_hi) == (on(9, 11), on(1, 3, year=2027))
    assert (window.month_lo, window.month_hi) == (on(10, 1), on(1, 1, year=2027))
    assert (window.reads_months, window.reads_days, window.reads_hours, window.reads_events) == (True,) * 4


def test_a_window_of_whole_months_reads_only_month_rows():
    window = plan(UsageRead(on(10, 1), on(12, 1), by_day=True, by_month=True))
    assert (window.month_lo, window.month_hi) == (on(10, 1), on(12, 1))
    assert (window.reads_months, window.reads_days, window.reads_hours, window.reads_events) == (
        True, False, False, False,
    )  # fmt: skip


def test_a_month_with_an_hour_cut_inside_is_read_by_the_day():
    """A price change at 14:30 on 5 November: that hour from the events, the 5th's other hours
    from the hours, November's other days from the days, October from its month row."""
    window = plan(UsageRead(on(10, 1), on(12, 1), cuts=(on(11, 5, 14, 30),), by_day=True, by_month=True))
    assert window.raw_months == (on(11, 1),) and window.raw_days == (on(11, 5),)
    assert (window.reads_months, window.reads_days, window.reads_hours, window.reads_events) == (True,) * 4


def test_no_month_row_is_read_by_the_day_nor_for_less_than_a_whole_month():
    assert not plan(UsageRead(on(10, 1), on(12, 1), by_day=True)).reads_months
    assert not plan(UsageRead(on(10, 2), on(11, 30), by_day=True, by_month=True)).reads_months
    assert not plan(UsageRead(on(10, 1), on(12, 1), stored_by=on(12, 2), by_day=True, by_month=True)).reads_months
