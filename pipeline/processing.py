"""Messages through the stage: validate, dedupe, meter, rate. Pure: it reads the id window, and
the caller remembers the stored ids once it has sent them."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from billing.pricing import PriceBook
from pipeline.dedup import RecentIds
from pipeline.metering import event_columns, measure
from pipeline.rating import ENGINE, rate_quantities
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
    columns = event_columns(fresh)
    rated, unpriced = rate_quantities(measure(columns, book.xaas_meters), book)
    accepted, rejected = columns.accepted, group.rejected
    if unpriced:
        accepted = accepted.filter(~pl.col("id").is_in(list(unpriced)))
        rejected = rejected + _unpriced_rejections(fresh, unpriced)
    return BatchOutcome(
        events=usage_events(accepted, rated.lazy(), book.currency).collect(engine=ENGINE),
        rated=rated,
        rejected=rejected,
        duplicates=len(first_seen) - sum(first_seen),
    )


def usage_events(accepted: pl.LazyFrame, rated: pl.LazyFrame, currency: str) -> pl.LazyFrame:
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


def _unpriced_rejections(fresh: ValidEvents, unpriced: dict[str, str]) -> list[Rejection]:
    """Events nobody can price are refused with the reason, as they came."""
    return [
        Rejection(index, event.id, unpriced[event.id], as_json_value(fresh.raw(index)))
        for index, event in enumerate(fresh.events)
        if event.id in unpriced
    ]
