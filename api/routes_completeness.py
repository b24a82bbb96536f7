"""``GET /v1/completeness``: per producer and hour, whether the usage sent has all been stored."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api import metrics
from api.access.guard import OperationsReader
from api.services import services_of
from billing.completeness import Gap, HourStatus, hour_statuses
from meterline.exceptions import InvalidRange
from storage.stored_messages import Completeness
from storage.usage_queries import UsageWindow

router = APIRouter(prefix="/v1", tags=["operations"])
LONGEST_WINDOW = timedelta(days=31)
GAUGE_EVERY_S = 30.0
log = logging.getLogger(__name__)


async def count_sources_with_gaps(reader: Completeness) -> None:
    """Keep ``meterline_sources_with_gaps`` current, for an alert on it."""
    while True:
        try:
            _count_sources_with_gaps(await run_in_threadpool(reader.gaps))
        except Exception as error:  # a storage hiccup: the next round tries again
            log.warning("could not count the sources with gaps: %s", error)
        await asyncio.sleep(GAUGE_EVERY_S)


class GapOut(BaseModel):
    first_missing: int = Field(description="The first message number sent and never stored")
    last_missing: int
    hours: tuple[datetime, datetime] | None = Field(description="First and last hour its usage may lie in")


class HourOut(BaseModel):
    hour: datetime
    status: HourStatus


class SourceCompleteness(BaseModel):
    producer: str = Field(description="An agent (agent/NAME) or an API intake (intake/NAME)")
    complete: bool = Field(description="No message of it is missing")
    gaps: list[GapOut]
    hours: list[HourOut]


class CompletenessReport(BaseModel):
    start: datetime = Field(serialization_alias="from")
    end: datetime = Field(serialization_alias="to")
    sources_with_gaps: int
    sources: list[SourceCompleteness]


def _count_sources_with_gaps(gaps: list[Gap]) -> None:
    metrics.SOURCES_WITH_GAPS.set(len({gap.producer for gap in gaps}))


@router.get("/completeness", response_model=CompletenessReport, response_model_by_alias=True)
def completeness(
    request: Request,
    _caller: OperationsReader,
    start: Annotated[datetime | None, Query(alias="from", description="Inclusive, UTC; default: 24 h ago")] = None,
    end: Annotated[datetime | None, Query(alias="to", description="Exclusive, UTC; default: now")] = None,
) -> CompletenessReport:
    """Hours are ``complete``, ``late`` (stored more than ``METERLINE_LATE_AFTER_S`` after the
    hour ended) or ``missing`` (a gap in a producer's message numbers may hold their usage).
    Gaps are listed whatever their hours; the window holds at most 31 days of hours."""
    now = datetime.now(UTC)
    window = UsageWindow("", start or now - timedelta(days=1), end or now)
    if window.end - window.start > LONGEST_WINDOW:
        raise InvalidRange("the window may span at most 31 days")
    reader: Completeness = services_of(request).completeness
    gaps = reader.gaps()
    _count_sources_with_gaps(gaps)
    statuses = hour_statuses(reader.stored_hours(window.start, window.end), gaps, services_of(request).late_after)
    producers = sorted(set(statuses) | {gap.producer for gap in gaps})
    sources = [
        SourceCompleteness(
            producer=producer,
            complete=not any(gap.producer == producer for gap in gaps),
            gaps=[
                GapOut(first_missing=gap.first_missing, last_missing=gap.last_missing, hours=gap.hours())
                for gap in gaps
                if gap.producer == producer
            ],
            hours=[
                HourOut(hour=hour, status=status)
                for hour, status in sorted(statuses.get(producer, {}).items())
                if window.start <= hour < window.end
            ],
        )
        for producer in producers
    ]
    return CompletenessReport(
        start=window.start,
        end=window.end,
        sources_with_gaps=sum(not source.complete for source in sources),
        sources=sources,
    )
