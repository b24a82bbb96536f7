"""The API's response bodies, so that the OpenAPI document tells integrators their exact shape.

Money and quantities are decimal strings in fixed-point notation: no float ever carries them.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated

from fastapi import Path
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

from billing.periods import PERIOD_PATTERN
from schemas.identifiers import IDENTIFIER_PATTERN

FixedPoint = Annotated[Decimal, PlainSerializer(lambda value: format(value, "f"), return_type=str)]
DECIMAL_TEXT = re.compile(r"[0-9]{1,15}(\.[0-9]{1,12})?")


def _decimal_text(value: object) -> Decimal:
    """Money and thresholds come as decimal strings of ASCII digits ("12.50"): no float, no
    exponent, no sign, no full-width digits, no underscores. (A ``Decimal`` is the code's own.)"""
    if isinstance(value, Decimal):
        return value
    if not isinstance(value, str) or not DECIMAL_TEXT.fullmatch(value):
        raise ValueError('a decimal string of ASCII digits such as "12.50", up to 15 digits and 12 places')
    return Decimal(value)


DecimalText = Annotated[Decimal, BeforeValidator(_decimal_text)]
"""A non-negative decimal sent as a string, parsed strictly."""
TIME_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(Z|[+-][0-9]{2}:[0-9]{2})")


def _time_text(value: object) -> datetime:
    """An instant is an ISO 8601 string with its offset ("2026-11-01T00:00:00Z"): a bare number
    would be read as Unix seconds, which a caller rarely means."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not TIME_TEXT.fullmatch(value):
        raise ValueError('an ISO 8601 time with its offset, such as "2026-11-01T00:00:00Z"')
    return datetime.fromisoformat(value)


TimeText = Annotated[datetime, BeforeValidator(_time_text)]
"""An instant sent as an ISO 8601 string with its offset, parsed strictly."""


class UsageRow(BaseModel):
    period_start: datetime = Field(description="Start of the hour, day or month, UTC")
    resource_id: str | None = Field(default=None, description="With group_by=resource")
    product: str | None = Field(default=None, description="With group_by=resource or product")
    meter: str
    dimension: str = Field(description="Disk tier, vDC allocation model or XaaS sku; empty if none")
    unit: str
    currency: str
    quantity: FixedPoint
    amount: FixedPoint = Field(description="Exact, 12 decimal places; round only for display")
    rated_rows: int


class UsageReport(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    customer_id: str
    start: datetime = Field(alias="from", description="Inclusive, UTC")
    end: datetime = Field(alias="to", description="Exclusive, UTC")
    granularity: str
    group_by: str
    totals: dict[str, FixedPoint] = Field(
        description="Per currency, rounded to its minor unit half away from zero, as invoices are"
    )
    totals_exact: dict[str, FixedPoint] = Field(
        description="Per currency, the sum of the rows' amounts (each exact to 12 places), before rounding to the"
        " currency's minor unit; an invoice is priced on the exact figures instead"
    )
    next_after: str | None = Field(
        default=None,
        description="With limit: the id to ask for the next page of resources after; null on the last page",
    )
    rows: list[UsageRow]


CustomerId = Annotated[str, Path(pattern=IDENTIFIER_PATTERN, description="A catalog identifier")]
PeriodName = Annotated[str, Path(pattern=PERIOD_PATTERN, description="A month, YYYY-MM")]
InvoiceId = Annotated[
    str,
    Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._~-]{0,200}$", description="period.issuer.buyer, as listed"),
]
"""Path values are checked against the identifiers' pattern before anything reads them: a value
that cannot be an id (a CR/LF, a quote) never reaches a query or a header."""


class RejectedEvent(BaseModel):
    index: int = Field(description="Position of the event in the posted batch")
    id: str | None
    reason: str


class EventsOutcome(BaseModel):
    accepted: list[str] = Field(description="Ids of the events durably queued")
    rejected: list[RejectedEvent] = Field(description="The first 100 events refused, each with its reason")
    rejected_count: int = Field(description="How many events were refused in all")
