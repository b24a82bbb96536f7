"""The instant a close may cut at, read by any process from the sinks' marks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from storage import clock
from storage.clock import StoredThrough

pytestmark = pytest.mark.integration

DB = "meterline"


def test_the_cutoff_is_the_earliest_mark_and_holds_below_a_write_under_way(engine: Any):
    reader = StoredThrough(engine, DB)
    before_any = datetime.now(UTC)
    assert reader.now() >= before_any, "no sink heard from: nothing is being written"

    north, south = StoredThrough(engine, DB, "sink-north"), StoredThrough(engine, DB, "sink-south")
    north.idle()
    south.idle()
    with north.writing() as stamp:
        south._last_mark = 0.0  # noqa: SLF001 - south marks again at once, past north's stamp
        south.idle()
        cut = reader.now()
        assert cut < stamp, "north's write is under way: nothing it stamped is cut"
    assert reader.now() >= stamp, "written: north's mark has passed its stamp"


def test_a_failed_write_leaves_the_mark_where_it_was(engine: Any):
    reader, sink = StoredThrough(engine, DB), StoredThrough(engine, DB, "sink")
    sink.idle()
    marked = reader.now()
    with pytest.raises(RuntimeError), sink.writing():
        raise RuntimeError("the engine went away")
    assert reader.now() == marked


def test_a_sink_not_heard_from_for_long_is_gone(engine: Any, monkeypatch: pytest.MonkeyPatch):
    reader, stopped = StoredThrough(engine, DB), StoredThrough(engine, DB, "stopped-sink")
    stopped.idle()
    assert reader.now() < datetime.now(UTC)
    monkeypatch.setattr(clock, "GONE_AFTER", timedelta(seconds=0))
    later = datetime.now(UTC)
    assert reader.now() >= later
