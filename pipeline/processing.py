"""Messages through the stage: validate, dedupe, meter, rate. Pure apart from the id window."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import polars as pl

from pipeline.dedup import RecentIds
from pipeline.metering import measure_events
from pipeline.rating import PriceBook, rate_quantities
from pipeline.validation import Rejection, split_valid
from schemas.events import Event


@dataclass(frozen=True)
class BatchOutcome:
    accepted: list[Event]
    rated: pl.DataFrame
    rejected: list[Rejection]
    duplicates: int

    def accepted_ndjson(self) -> bytes:
        """Accepted events one per line, the form the raw-events table ingests natively."""
        return b"\n".join(orjson.dumps(event) for event in self.accepted)


def process_batch(payloads: list[bytes], recent: RecentIds, book: PriceBook) -> BatchOutcome:
    """Handle several messages as one frame: per-frame costs are paid once, not per message."""
    valid: list[Event] = []
    rejected: list[Rejection] = []
    for payload in payloads:
        accepted, refused = split_valid(payload)
        valid += accepted
        rejected += refused
    fresh, duplicates = recent.drop_seen(valid)
    rated, unpriced = rate_quantities(measure_events(fresh), book)
    if unpriced:
        rejected += [Rejection(i, e["id"], unpriced[e["id"]], e) for i, e in enumerate(fresh) if e["id"] in unpriced]
        fresh = [event for event in fresh if event["id"] not in unpriced]
    return BatchOutcome(accepted=fresh, rated=rated, rejected=rejected, duplicates=duplicates)
