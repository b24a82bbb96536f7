"""A flush is added to the rollups in place, and recounted whenever adding could count twice.

Each case writes through the sink's own storage code (``UsageStore``) into the real engine and
checks the rollups against a recount of every stored event (``drift``) and hand-counted rows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from storage.rollups import drift
from storage.usage_store import UsageStore
from tests.factories import AT, vm_sample
from tests.integration.test_identities import frame

pytestmark = pytest.mark.integration

DB = "meterline"
STORED = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(engine: Any) -> UsageStore:
    return UsageStore(engine, DB)


def recounts(store: UsageStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many events each recount of ``store`` was given, as it runs."""
    rollups = store._rollups  # noqa: SLF001 - which way the rollups were kept is what is tested
    given: list[int] = []
    recount = rollups.recount
    monkeypatch.setattr(rollups, "recount", lambda usage: (given.append(usage.num_rows), recount(usage)))
    return given


def vcpu_hour(engine: Any) -> tuple[Decimal, int]:
    """vCPU-seconds and rated rows of vm-1's 10:00 hour, as the hour rollup holds them."""
    query = (
        f"SELECT sum(base_sum), sum(rated_rows) FROM {DB}.usage_by_hour FINAL "
        "WHERE resource_id = 'vm-1' AND meter = 'vcpu_hours' AND hour = '2026-11-02 10:00:00'"
    )
    (row,) = engine.query(query).result_rows
    return row[0], row[1]


def test_flushes_of_new_events_are_added_in_place(engine, store, monkeypatch):
    """Three 5-minute samples of 2 vCPU in one hour, in three flushes a second apart: 600
    vCPU-seconds each, 1,800 in the hour, three rated rows; no recount."""
    given = recounts(store, monkeypatch)
    for n in range(3):
        store.write(frame([vm_sample(at=AT + timedelta(minutes=5 * (n + 1)))]), STORED + timedelta(seconds=n))

    assert given == []
    assert vcpu_hour(engine) == (Decimal(1800), 3)
    assert drift(engine, DB) == 0


def test_a_crash_between_the_hours_and_the_days_is_recounted_when_redelivered(engine, store, monkeypatch):
    """Killed after the hour rows took the flush and before the day rows did: the redelivered
    event is a repeat, so its hour and day are recounted, and both count it once."""
    store.write(frame([vm_sample(at=AT + timedelta(minutes=5))]), STORED)
    rollups = store._rollups  # noqa: SLF001 - the step the crash interrupts
    command = rollups._client.command  # noqa: SLF001

    def killed_at_the_days(statement: str, *args: Any, **kwargs: Any) -> Any:
        if statement == rollups._add_days:  # noqa: SLF001
            raise SystemExit("killed")
        return command(statement, *args, **kwargs)

    second = frame([vm_sample(at=AT + timedelta(minutes=10))])
    monkeypatch.setattr(rollups._client, "command", killed_at_the_days)  # noqa: SLF001
    with pytest.raises(SystemExit):
        store.write(second, STORED + timedelta(seconds=1))
    monkeypatch.undo()
    assert drift(engine, DB) > 0, "the day rows lack the second sample"

    given = recounts(store, monkeypatch)
    assert store.write(second, STORED + timedelta(seconds=2)).repeats.num_rows == 1
    assert given == [1]
    assert vcpu_hour(engine) == (Decimal(1200), 2)
    assert drift(engine, DB) == 0


def test_a_writer_that_may_not_be_alone_recounts(engine, store, monkeypatch):
    """A sink that does not read every partition of the rated topic: another may add to the same
    row at the same time, and one of two additions would be lost, so it recounts."""
    given = recounts(store, monkeypatch)

    store.write(frame([vm_sample(at=AT + timedelta(minutes=5))]), STORED, sole_writer=False)

    assert given == [1]
    assert vcpu_hour(engine) == (Decimal(600), 1)
    assert drift(engine, DB) == 0
