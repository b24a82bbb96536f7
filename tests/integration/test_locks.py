"""The cross-process lock on the real engine: a lock left by a process of this host that was
killed is taken over at once; one held by a live process is waited for."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

import pytest

from storage.locks import held

pytestmark = pytest.mark.integration
LONG = timedelta(hours=1)


def leave_lock(engine: Any, holder: str) -> None:
    engine.command(f"CREATE TABLE meterline.`test_lock` (held UInt8) ENGINE = Memory COMMENT '{holder}'")


def test_a_lock_whose_holder_was_killed_is_taken_over_at_once(engine: Any):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    leave_lock(engine, f"{socket.gethostname()}:{gone.pid}")
    started = time.monotonic()
    with held(engine, "meterline", "test_lock", stale_after=LONG, wait=timedelta(seconds=5)):
        assert time.monotonic() - started < 2


def test_a_lock_held_by_a_live_process_is_waited_for(engine: Any):
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        leave_lock(engine, f"{socket.gethostname()}:{alive.pid}")
        with (
            pytest.raises(TimeoutError),
            held(engine, "meterline", "test_lock", stale_after=LONG, wait=timedelta(seconds=1)),
        ):
            pass
    finally:
        alive.kill()
        alive.wait()


def test_a_lock_of_another_host_is_waited_for_until_it_is_stale(engine: Any):
    leave_lock(engine, f"elsewhere.example:{os.getpid()}")
    with (
        pytest.raises(TimeoutError),
        held(engine, "meterline", "test_lock", stale_after=LONG, wait=timedelta(seconds=1)),
    ):
        pass
    with held(engine, "meterline", "test_lock", stale_after=timedelta(0), wait=timedelta(seconds=5)):
        pass
