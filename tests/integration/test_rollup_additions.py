"""The engine adds each write to the rollups; a redelivery corrects what a crash cut short.

Each case writes through the sink's own storage code (``UsageStore``) into the real engine and
checks the rollups against a recount of every stored event (``drift``) and hand-counted rows:
a 5-minute sample of 2 vCPU is 600 vCPU-seconds.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from storage.rollups import drift
from storage.usage_store import INSERTED_AT, UsageStore
from tests.factories import AT, vm_sample
from tests.integration.test_identities import frame

pytestmark = pytest.mark.integration

DB = "meterline"
STORED = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(engine: Any) -> UsageStore:
    return UsageStore(engine, DB)


def corrections(store: UsageStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many events each correction of ``store``'s rollups was given, as it runs."""
    rollups = store._rollups  # noqa: SLF001 - whether the rollups were corrected is what is tested
    given: list[int] = []
    correct = rollups.correct
    monkeypatch.setattr(rollups, "correct", lambda usage: (given.append(usage.num_rows), correct(usage)))
    return given


def vcpu_hour(engine: Any) -> tuple[Decimal, int]:
    """vCPU-seconds and rated rows of vm-1's 10:00 hour, as the hour rollup holds them."""
    query = (
        f"SELECT sum(base_sum), sum(rated_rows) FROM {DB}.usage_hours FINAL "
        "WHERE resource_id = 'vm-1' AND meter = 'vcpu_hours' AND hour = '2026-11-02 10:00:00'"
    )
    (row,) = engine.query(query).result_rows
    return row[0], row[1]


def test_flushes_of_new_events_are_added_as_written(engine, store, monkeypatch):
    """Three samples in one hour, in three flushes a second apart: 1,800 vCPU-seconds in the
    hour, three rated rows, and nothing corrected."""
    given = corrections(store, monkeypatch)
    for n in range(3):
        store.write(frame([vm_sample(at=AT + timedelta(minutes=5 * (n + 1)))]), STORED + timedelta(seconds=n))

    assert given == []
    assert vcpu_hour(engine) == (Decimal(1800), 3)
    assert drift(engine, DB) == 0


def test_an_event_recorded_but_not_written_is_written_when_it_comes_again(engine, store, monkeypatch):
    """Killed after its identity was recorded and before its event was written: the copy that
    comes again is a repeat, yet it is written (once) and counted (once)."""
    store.write(frame([vm_sample(at=AT + timedelta(minutes=5))]), STORED)
    client = store._client  # noqa: SLF001 - the step the crash interrupts
    insert = client.insert_arrow

    def killed_at_the_write(table: str, *args: Any, **kwargs: Any) -> Any:
        if table.endswith(".usage_events"):
            raise SystemExit("killed")
        return insert(table, *args, **kwargs)

    second = frame([vm_sample(at=AT + timedelta(minutes=10))])
    monkeypatch.setattr(client, "insert_arrow", killed_at_the_write)
    with pytest.raises(SystemExit):
        store.write(second, STORED + timedelta(seconds=1))
    monkeypatch.undo()
    assert vcpu_hour(engine) == (Decimal(600), 1), "the second sample is not stored"

    given = corrections(store, monkeypatch)
    written = store.write(second, STORED + timedelta(seconds=2))
    assert (written.new.num_rows, written.repeats.num_rows) == (1, 1)
    assert given == [1]
    assert vcpu_hour(engine) == (Decimal(1200), 2)
    assert engine.command(f"SELECT count() FROM {DB}.usage_events FINAL") == 2
    assert drift(engine, DB) == 0


def test_an_event_added_twice_is_taken_back_when_it_comes_again(engine, store):
    """An event the engine wrote twice (a write cut short and made again, or an older writer
    that kept no identities) is counted twice until it comes again: then its hour and day are
    recounted, and hold it once."""
    sample = frame([vm_sample(at=AT + timedelta(minutes=5))])
    store.write(sample, STORED)
    again = sample.append_column("inserted_at", [[STORED + timedelta(seconds=1)]]).cast(
        sample.schema.append(_inserted_at())
    )
    engine.insert_arrow(f"{DB}.usage_events", again)
    assert vcpu_hour(engine) == (Decimal(1200), 2), "the engine added the second write"
    assert drift(engine, DB) > 0

    assert store.write(sample, STORED + timedelta(seconds=2)).repeats.num_rows == 1

    assert vcpu_hour(engine) == (Decimal(600), 1)
    assert drift(engine, DB) == 0


def take_back_every_row(engine: Any, rollup: str, period: str) -> None:
    """What a crash between the hours and ``rollup`` loses, taken back by hand: each row's sums
    added again negated (a sum rollup's rows merge by adding)."""
    engine.command(
        f"INSERT INTO {DB}.{rollup} SELECT customer_id, {period}, resource_id, product, meter, dimension, unit, "
        "currency, base_divisor, -base_sum, base_max, latest, -amount, -amount_base, -rated_rows, stored_until "
        f"FROM {DB}.{rollup} FINAL"
    )


def test_a_day_that_missed_what_its_hours_got_is_recounted_when_an_event_comes_again(engine, store):
    """The days are added to from the hours, in a second step a crash can cut: here the day
    lost the hour's row (taken back by hand). When the sample comes again, the hour is right
    (nothing to add) and the day, recounted from the hours, gets its 600 vCPU-seconds back."""
    sample = frame([vm_sample(at=AT + timedelta(minutes=5))])
    store.write(sample, STORED)
    take_back_every_row(engine, "usage_days", "day")
    assert drift(engine, DB) > 0

    assert store.write(sample, STORED + timedelta(seconds=1)).repeats.num_rows == 1

    vcpu_day = f"SELECT sum(base_sum), sum(rated_rows) FROM {DB}.usage_days WHERE meter = 'vcpu_hours'"
    assert engine.query(vcpu_day).result_rows == [(Decimal(600), 1)]
    assert vcpu_hour(engine) == (Decimal(600), 1)
    assert drift(engine, DB) == 0


def test_a_month_that_missed_what_its_hours_got_is_recounted_when_an_event_comes_again(engine, store):
    """The months are added to from the hours as the days are: here the month lost the hour's
    row. When the sample comes again, the month, recounted from the hours, gets its 600
    vCPU-seconds back, and the day (which lost nothing) is not added to again."""
    sample = frame([vm_sample(at=AT + timedelta(minutes=5))])
    store.write(sample, STORED)
    take_back_every_row(engine, "usage_months", "month")
    assert drift(engine, DB) > 0

    assert store.write(sample, STORED + timedelta(seconds=1)).repeats.num_rows == 1

    for table in ("usage_months", "usage_days"):
        vcpu = f"SELECT sum(base_sum), sum(rated_rows) FROM {DB}.{table} WHERE meter = 'vcpu_hours'"
        assert engine.query(vcpu).result_rows == [(Decimal(600), 1)], table
    assert drift(engine, DB) == 0


def test_writers_side_by_side_add_without_losing_either(engine):
    """Two sinks writing the same hour at once (each reads half of the rated topic): both add,
    neither replaces the other. Twelve samples each: 24 x 600 = 14,400 vCPU-seconds."""
    stores = [UsageStore(engine, DB, writer=f"sink-{n}") for n in range(2)]
    ready = threading.Barrier(2)

    def write(n: int) -> None:
        ready.wait()
        for minute in range(12):
            sample = vm_sample(at=AT + timedelta(minutes=5 * (minute + 1)))
            sample = {**sample, "source": f"test://hv-{n}"}  # another hypervisor's: another event
            stores[n].write(frame([sample]), STORED + timedelta(seconds=minute))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert vcpu_hour(engine) == (Decimal(14_400), 24)
    assert drift(engine, DB) == 0


def _inserted_at() -> Any:
    import pyarrow as pa

    return pa.field("inserted_at", INSERTED_AT)
