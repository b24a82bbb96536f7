"""Usage per customer: JSON for billing systems and dashboards, CSV for spreadsheets."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from api.usage_queries import Granularity, GroupBy, UsageQueries, UsageWindow

router = APIRouter(prefix="/v1/customers/{customer_id}")
CENT = Decimal("0.01")

From = Annotated[datetime | None, Query(alias="from", description="Inclusive, UTC; default: start of this month")]
To = Annotated[datetime | None, Query(alias="to", description="Exclusive, UTC; default: now")]


def window(customer_id: str, start: datetime | None, end: datetime | None) -> UsageWindow:
    now = datetime.now(UTC)
    return UsageWindow(
        customer_id=customer_id,
        start=start or now.replace(day=1, hour=0, minute=0, second=0, microsecond=0),
        end=end or now,
    )


def _text(value: Any) -> Any:
    """Decimals as fixed-point strings (no float ever carries an amount), times as UTC ISO 8601."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    return value


def _to_cent(amount: Decimal) -> str:
    """A total as invoiced: rounded half-even to the currency's cent."""
    return format(amount.quantize(CENT, rounding=ROUND_HALF_EVEN), "f")


@router.get("/usage")
def get_usage(
    request: Request,
    customer_id: str,
    start: From = None,
    end: To = None,
    granularity: Granularity = Granularity.DAY,
    group_by: GroupBy = GroupBy.METER,
) -> dict[str, Any]:
    queries: UsageQueries = request.app.state.queries
    usage_window = window(customer_id, start, end)
    rows = queries.usage(usage_window, granularity, group_by)
    totals = queries.total(usage_window)
    return {
        "customer_id": customer_id,
        "from": usage_window.start.isoformat(),
        "to": usage_window.end.isoformat(),
        "granularity": granularity.value,
        "group_by": group_by.value,
        "totals": {currency: _to_cent(amount) for currency, amount in totals.items()},
        "totals_exact": {currency: _text(amount) for currency, amount in totals.items()},
        "rows": [{key: _text(value) for key, value in row.items()} for row in rows],
    }


@router.get("/usage.csv", response_class=StreamingResponse)
def get_usage_csv(request: Request, customer_id: str, start: From = None, end: To = None) -> StreamingResponse:
    queries: UsageQueries = request.app.state.queries
    usage_window = window(customer_id, start, end)
    filename = f"usage-{customer_id}-{usage_window.start:%Y%m%d}-{usage_window.end:%Y%m%d}.csv"
    return StreamingResponse(
        queries.hourly_csv(usage_window),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
