"""Messages through the stage: validate, dedupe, meter, rate. Pure: it reads the id window, and
the caller remembers the stored ids once it has sent them."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from pipeline.dedup import RecentIds
from pipeline.metering import accepted_frame, measure_events
from pipeline.rating import PriceBook, rate_quantities
from pipeline.validation import Rejection, ValidEvents, split_group
from schemas.events import as_json_value
from schemas.records import RATED_LISTS, USAGE_EVENT_SCHEMA


@dataclass(frozen=True)
class BatchOutcome:
    """``events`` are the usage events to store (one row each, first copies only), ``rated``
    the same usage one row per event and meter."""

    events: pl.DataFrame
    rated: pl.DataFrame
    rejected: list[Rejection]
    duplicates: int


def process_batch(payloads: list[bytes], recent: RecentIds, book: PriceBook) -> BatchOutcome:
    """Handle several messages as one frame: per-frame costs are paid once, not per message.

    A repeated event is left out rather than stored again: a second copy's row would replace
    the first one in storage, so it must never differ from it.
    """
    group = split_group(payloads)
    first_seen = recent.first_seen(event.id for event in group.events)
    fresh = group.select(first_seen)
    rated, unpriced = rate_quantities(measure_events(fresh.events), book)
    rejected = group.rejected
    if unpriced:
        fresh, refused = _refuse_unpriced(fresh, unpriced)
        rejected = rejected + refused
    return BatchOutcome(
        events=usage_events(accepted_frame(fresh), rated, book.currency),
        rated=rated,
        rejected=rejected,
        duplicates=len(first_seen) - sum(first_seen),
    )


def usage_events(accepted: pl.DataFrame, rated: pl.DataFrame, currency: str) -> pl.DataFrame:
    """One row per accepted event with its rated usage as lists (empty when nothing was billable)."""
    lists = [f"rated.{field}" for field in RATED_LISTS]
    grouped = rated.group_by("event_id").agg(
        pl.col(field).alias(name) for field, name in zip(RATED_LISTS, lists, strict=True)
    )
    none_billed = [pl.col(name).fill_null(pl.lit([], dtype=USAGE_EVENT_SCHEMA[name])) for name in lists]
    return (
        accepted.join(grouped, left_on="id", right_on="event_id", how="left")
        .with_columns(*none_billed, currency=pl.lit(currency))
        .select(list(USAGE_EVENT_SCHEMA))
    )


def _refuse_unpriced(fresh: ValidEvents, unpriced: dict[str, str]) -> tuple[ValidEvents, list[Rejection]]:
    """Events nobody can price leave the accepted ones, as rejections with the reason."""
    refused = [
        Rejection(index, event.id, unpriced[event.id], as_json_value(fresh.raw(index)))
        for index, event in enumerate(fresh.events)
        if event.id in unpriced
    ]
    return fresh.select(event.id not in unpriced for event in fresh.events), refused
