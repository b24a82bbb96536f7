"""Which partitions a consumer is stuck on (``meterline.stalls.StuckPartitions``)."""

from __future__ import annotations

from meterline.stalls import StuckPartitions, past_the_end

P = ("events", 0)


def test_messages_waiting_with_no_committed_progress_for_the_allowance_are_stuck():
    stuck = StuckPartitions(stall_after_s=60)
    assert stuck.observe({P: (0, 100)}, {P: 40}, now=0) == set()
    assert stuck.observe({P: (0, 120)}, {P: 40}, now=59) == set()
    assert stuck.observe({P: (0, 130)}, {P: 40}, now=60) == {P}


def test_progress_or_nothing_waiting_resets_the_allowance():
    stuck = StuckPartitions(stall_after_s=60)
    stuck.observe({P: (0, 100)}, {P: 40}, now=0)
    assert stuck.observe({P: (0, 100)}, {P: 41}, now=50) == set(), "it moved"
    assert stuck.observe({P: (0, 100)}, {P: 41}, now=100) == set(), "50 s since it moved"
    assert stuck.observe({P: (0, 100)}, {P: 41}, now=110) == {P}
    idle = StuckPartitions(stall_after_s=60)
    assert idle.observe({P: (0, 100)}, {P: 100}, now=0) == set()
    assert idle.observe({P: (0, 100)}, {P: 100}, now=1000) == set(), "caught up: nothing waits"


def test_a_group_without_offsets_is_read_from_the_logs_start():
    """After the embedded broker restarts empty, the group has no offsets (-1001)."""
    stuck = StuckPartitions(stall_after_s=10)
    stuck.observe({P: (0, 5)}, {}, now=0)
    assert stuck.observe({P: (0, 5)}, {P: -1001}, now=10) == {P}


def test_an_end_listed_below_the_committed_offset_is_not_taken_for_messages_waiting():
    """The embedded broker lists the start of its last record batch as the end: a consumer that
    read the whole batch has committed past it, and nothing waits."""
    stuck = StuckPartitions(stall_after_s=10)
    stuck.observe({P: (0, 1)}, {P: 10}, now=0)
    assert stuck.observe({P: (0, 1)}, {P: 10}, now=1000) == set()


def test_a_position_or_committed_offset_past_the_fetched_end_is_a_lost_log():
    assert past_the_end(position=54, committed=None, fetched_end=52)
    assert past_the_end(position=-1001, committed=54, fetched_end=52), "no position yet: the committed offset"
    assert not past_the_end(position=52, committed=54, fetched_end=52), "at the end: waiting for more"
    assert not past_the_end(position=None, committed=None, fetched_end=52)
    assert not past_the_end(position=54, committed=None, fetched_end=-1001), "no fetch answered yet"


def test_a_restart_gives_every_partition_a_new_allowance():
    stuck = StuckPartitions(stall_after_s=60)
    stuck.observe({P: (0, 100)}, {P: 40}, now=0)
    stuck.restart(now=70)
    assert stuck.observe({P: (0, 100)}, {P: 40}, now=100) == set()
    assert stuck.observe({P: (0, 100)}, {P: 40}, now=130) == {P}
