"""Usage per customer: JSON for billing systems and dashboards, CSV for spreadsheets."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from api.access.guard import Caller, UsageReader
from api.models import CustomerId, UsageReport
from api.services import services_of
from api.usage_formats import csv_chunks, rows_json
from billing.money import round_money
from billing.scope import Scope
from meterline.exceptions import InvalidQuery
from schemas.meters import Meter
from storage.usage_queries import Granularity, GroupBy, ResourcePage, UsageQueries, UsageWindow, totals

router = APIRouter(prefix="/v1/customers/{customer_id}")

From = Annotated[datetime | None, Query(alias="from", description="Inclusive, UTC; default: start of this month")]
To = Annotated[datetime | None, Query(alias="to", description="Exclusive, UTC; default: now")]
OneMeter = Annotated[Meter | None, Query(description="Only this meter's usage, as a chart of one meter shows")]


def window(customer_id: str, start: datetime | None, end: datetime | None) -> UsageWindow:
    now = datetime.now(UTC)
    return UsageWindow(
        customer_id=customer_id,
        start=start or now.replace(day=1, hour=0, minute=0, second=0, microsecond=0),
        end=end or now,
    )


def seen(caller: Caller, meter: Meter | None) -> Scope:
    """What the caller sees, of one meter if it asked for one (never more than its own)."""
    return caller.scope.limited_to(None if meter is None else [meter.value])


@router.get("/usage", response_model=UsageReport, response_model_by_alias=True)
def get_usage(
    request: Request,
    caller: UsageReader,
    customer_id: CustomerId,
    start: From = None,
    end: To = None,
    granularity: Granularity = Granularity.DAY,
    group_by: GroupBy = GroupBy.METER,
    meter: OneMeter = None,
    limit: Annotated[
        int | None, Query(ge=1, le=1000, description="With group_by=resource: this many resources, in order of id")
    ] = None,
    after: Annotated[
        str, Query(max_length=256, description="With limit: the resources after this id (a page's next_after)")
    ] = "",
) -> Response:
    """The rows are written straight from the engine's Arrow answer (a month of a large
    customer by hour and resource is hundreds of thousands); the rest is ``UsageReport``.
    With ``limit``, the rows and totals are those of a page of resources, so that a dashboard
    reads only the resources it shows."""
    queries: UsageQueries = services_of(request).queries
    usage_window = window(customer_id, start, end)
    scope = seen(caller, meter)
    next_after = None
    if limit is not None or after:
        if group_by is not GroupBy.RESOURCE or limit is None:
            raise InvalidQuery("limit and after page the resources of group_by=resource; after needs a limit")
        resources, next_after = queries.resource_page(scope, usage_window, ResourcePage(limit, after))
        usage_window = replace(usage_window, resources=tuple(resources))
    rows = queries.usage(scope, usage_window, granularity, group_by)
    amounts = totals(rows)
    report = UsageReport(
        customer_id=customer_id,
        start=usage_window.start,
        end=usage_window.end,
        granularity=granularity.value,
        group_by=group_by.value,
        totals={currency: round_money(amount, currency) for currency, amount in amounts.items()},
        totals_exact=amounts,
        next_after=next_after,
        rows=[],
    ).model_dump(mode="json", by_alias=True)
    body = orjson.dumps({**report, "rows": orjson.Fragment(rows_json(rows))})
    return Response(body, media_type="application/json")


@router.get("/usage.csv", response_class=StreamingResponse)
def get_usage_csv(
    request: Request,
    caller: UsageReader,
    customer_id: CustomerId,
    start: From = None,
    end: To = None,
    meter: OneMeter = None,
) -> StreamingResponse:
    queries: UsageQueries = services_of(request).queries
    usage_window = window(customer_id, start, end)
    scope = seen(caller, meter)
    filename = f"usage-{customer_id}-{usage_window.start:%Y%m%d}-{usage_window.end:%Y%m%d}.csv"
    return StreamingResponse(
        csv_chunks(queries.hourly(scope, usage_window)),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
