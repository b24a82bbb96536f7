"""A sink that fails is made anew; the process hosting it goes on."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from sinks import runner
from sinks.runner import SinkRunner


class Sink:
    """Fails on its first run; the next one runs until stopped."""

    made = 0

    def __init__(self) -> None:
        Sink.made += 1
        self.number = Sink.made
        self.stopped = threading.Event()
        self.stalled = False

    def run(self) -> None:
        if self.number == 1:
            raise RuntimeError("the engine went away mid-flush")
        self.stopped.wait(10)

    def stop(self) -> None:
        self.stopped.set()


def test_a_failed_sink_is_made_anew_and_stops_when_asked(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(runner, "FIRST_PAUSE_S", 0.01)
    made: list[Any] = []
    sink = SinkRunner(lambda: made.append(Sink()) or made[-1])  # type: ignore[func-returns-value]
    sink.start()
    deadline = threading.Event()
    for _ in range(500):
        if len(made) == 2:
            break
        deadline.wait(0.01)
    assert len(made) == 2 and sink.running
    sink.stop(within_s=5)
    assert not sink.running


def test_the_sink_alone_refuses_an_embedded_store(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """chDB is opened by one process: the API's, which hosts the sink."""
    from sinks import main as sink_main

    monkeypatch.delenv("METERLINE_CLICKHOUSE_DSN", raising=False)
    monkeypatch.setenv("METERLINE_DATA_DIR", str(tmp_path))
    with pytest.raises(SystemExit, match="embedded chDB"):
        sink_main.main()
