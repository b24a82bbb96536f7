"""Which partitions a consumer is stuck on (``meterline.stalls.StuckPartitions``)."""

from __future__ import annotations

from meterline.stalls import StuckPartitions

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


def test_a_group_without_offsets_reads_from_the_logs_start_and_a_log_that_shrank_is_waiting():
    """After the embedded broker restarts empty, the group has no offsets and the log starts
    again at 0; a committed offset past the log's end means the log was lost."""
    stuck = StuckPartitions(stall_after_s=10)
    stuck.observe({P: (0, 5)}, {}, now=0)
    assert stuck.observe({P: (0, 5)}, {P: -1001}, now=10) == {P}
    shrunk = StuckPartitions(stall_after_s=10)
    assert shrunk.observe({P: (0, 3)}, {P: 5000}, now=0) == {P}, "at once: nothing will ever come past it"


def test_a_restart_gives_every_partition_a_new_allowance():
    stuck = StuckPartitions(stall_after_s=60)
    stuck.observe({P: (0, 100)}, {P: 40}, now=0)
    stuck.restart(now=70)
    assert stuck.observe({P: (0, 100)}, {P: 40}, now=100) == set()
    assert stuck.observe({P: (0, 100)}, {P: 40}, now=130) == {P}
