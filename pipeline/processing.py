"""Messages through the stage: validate, dedupe, meter, rate. Pure apart from the id window."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from pipeline.dedup import RecentIds
from pipeline.metering import accepted_frame, measure_events
from pipeline.rating import PriceBook, rate_quantities
from pipeline.validation import Rejection, ValidEvents, split_group
from schemas.events import as_json_value


@dataclass(frozen=True)
class BatchOutcome:
    accepted: pl.DataFrame
    rated: pl.DataFrame
    rejected: list[Rejection]
    duplicates: int


def process_batch(payloads: list[bytes], recent: RecentIds, book: PriceBook) -> BatchOutcome:
    """Handle several messages as one frame: per-frame costs are paid once, not per message."""
    group = split_group(payloads)
    first_seen = recent.first_seen(event.id for event in group.events)
    fresh = [event for event, keep in zip(group.events, first_seen, strict=True) if keep]
    rated, unpriced = rate_quantities(measure_events(fresh), book)
    if unpriced:
        group = _refuse_unpriced(group, unpriced)
    return BatchOutcome(
        accepted=accepted_frame(group),
        rated=rated,
        rejected=group.rejected,
        duplicates=len(first_seen) - sum(first_seen),
    )


def _refuse_unpriced(group: ValidEvents, unpriced: dict[str, str]) -> ValidEvents:
    """Events nobody can price leave the accepted ones, as rejections with the reason."""
    kept = ValidEvents(rejected=list(group.rejected), messages=group.messages)
    for index, event in enumerate(group.events):
        if event.id in unpriced:
            kept.rejected.append(Rejection(index, event.id, unpriced[event.id], as_json_value(group.raw(index))))
        else:
            kept.keep(event, group.message_ids[index], group.offsets[index], group.lengths[index])
    return kept
