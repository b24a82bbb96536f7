"""A failure in one event never affects another: whichever step of the stage breaks on an event,
the event goes to the dead-letter topic with the error and the rest of its batch is stored."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import pipeline.processing as processing
from billing.adapters.catalog_file import load_catalog
from billing.pricing import price_book
from pipeline.dedup import RecentEvents
from pipeline.metering import EventColumns
from schemas.events import encode_batch
from schemas.intake import ValidEvents
from tests.factories import vm_sample, xaas_usage

BOOK = price_book(load_catalog(Path("billing/catalog.yaml")))
AT = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
POISON = vm_sample("vm-poison", at=AT)


def ids_in(value: Any) -> set[str]:
    """The event ids a step is handed: decoded events, their columns, or a frame of rows."""
    if isinstance(value, ValidEvents):
        return {event.id for event in value.events}
    if isinstance(value, EventColumns):
        return set(value.accepted.collect()["id"])
    frame = value.collect() if isinstance(value, pl.LazyFrame) else value
    column = "event_id" if "event_id" in frame.columns else "id"
    return set(frame[column])


def poisoned(step: Callable[..., Any]) -> Callable[..., Any]:
    def run(first: Any, *rest: Any, **named: Any) -> Any:
        if POISON["id"] in ids_in(first):
            raise OverflowError("injected: this event breaks the step")
        return step(first, *rest, **named)

    return run


@pytest.mark.parametrize("step", ["event_columns", "measure", "rate_quantities", "usage_events"])
def test_an_event_that_breaks_a_step_is_dead_lettered_alone(step, monkeypatch):
    """Eight events in two messages, one of which breaks ``step``: seven are stored and rated,
    the eighth is refused with the error, once."""
    monkeypatch.setattr(processing, step, poisoned(getattr(processing, step)))
    good = [vm_sample(f"vm-{n}", at=AT) for n in range(5)] + [xaas_usage("restore_gb", at=AT, resource_id="r-2")]
    messages = [encode_batch([good[0], good[1], POISON, good[2]]), encode_batch(good[3:] + [vm_sample("vm-9", at=AT)])]
    outcome = processing.process_batch(messages, RecentEvents(), BOOK)
    assert len(outcome.events) == 7 and POISON["id"] not in set(outcome.events["id"])
    assert set(outcome.rated["event_id"]) == set(outcome.events["id"])
    (refused,) = outcome.rejected
    assert refused.event_id == POISON["id"] and "OverflowError: injected" in refused.reason
    assert refused.event["data"]["resource_id"] == "vm-poison", "dead-lettered as it came"
