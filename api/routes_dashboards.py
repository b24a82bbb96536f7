"""Cost dashboards: cost and usage over time across the customers a caller sees, the month to
date with a forecast, and the freshness of the data. What Grafana's JSON panels read."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from api.access.guard import Caller, CreditReader, OperationsReader, UsageReader
from api.models import FixedPoint
from api.services import services_of
from billing.burn_rate import RECENT_HOURS, rate_of, runs_out_at, shown_rate
from billing.money import round_money
from billing.periods import bucket_ends
from storage.dashboards import CostGroup, CostWindow, Dashboards
from storage.usage_queries import Granularity

router = APIRouter(prefix="/v1", tags=["dashboards"])

Top = Annotated[int | None, Query(ge=1, le=1000, description="Keep the N groups of highest cost; the rest as (other)")]


class CostPointOut(BaseModel):
    period_start: datetime = Field(description="Start of the hour, day or month, UTC")
    group: str = Field(description="The customer, partner, product or meter; (other) for the groups past top")
    currency: str
    amount: FixedPoint = Field(description="Summed exactly, rounded once to the currency's minor unit")
    quantity: FixedPoint | None = Field(default=None, description="With group_by=meter: the meter's quantity")
    unit: str | None = None


class CostTotalOut(BaseModel):
    group: str
    currency: str
    amount: FixedPoint = Field(description="Over the window, summed exactly, rounded once to the minor unit")


class CostReport(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    start: datetime = Field(alias="from", description="Inclusive, UTC")
    end: datetime = Field(alias="to", description="Exclusive, UTC")
    granularity: str
    group_by: str
    totals: list[CostTotalOut] = Field(description="Per group over the window, highest first")
    series: list[CostPointOut]


class MonthToDateOut(BaseModel):
    customer_id: str
    currency: str
    to_date: FixedPoint = Field(description="Cost of the month so far, rounded to the cent")
    run_rate_per_hour: FixedPoint = Field(
        description=f"Cost per hour of the last {RECENT_HOURS} complete hours, over the hours since the "
        "customer's first usage in them"
    )
    forecast: FixedPoint = Field(description="to_date plus the run rate until the month's end, rounded to the cent")


class MonthToDateReport(BaseModel):
    month: str
    as_of: datetime
    customers: list[MonthToDateOut]


class IngestReport(BaseModel):
    newest_usage: datetime | None = Field(description="End of the newest usage stored in the last day")
    last_stored: datetime | None = Field(description="When the sink last stored a message, in the last day")
    freshness_s: float | None = Field(description="Seconds since then")
    events_per_s: FixedPoint = Field(description="Events stored per second over the last 5 minutes")


@router.get("/costs", response_model=CostReport, response_model_by_alias=True)
def costs(
    request: Request,
    caller: UsageReader,
    start: Annotated[
        datetime | None, Query(alias="from", description="Inclusive; default: start of this month")
    ] = None,
    end: Annotated[datetime | None, Query(alias="to", description="Exclusive; default: now")] = None,
    granularity: Granularity = Granularity.DAY,
    group_by: CostGroup = CostGroup.CUSTOMER,
    top: Top = None,
) -> CostReport:
    """Cost over time of every customer the caller sees, grouped by customer, partner (the
    seller: a partner or the provider), product or meter. A window spans at most 10,000 buckets
    of its granularity (422 beyond)."""
    now = datetime.now(UTC)
    window = CostWindow(start or now.replace(day=1, hour=0, minute=0, second=0, microsecond=0), end or now, granularity)
    dashboards: Dashboards = services_of(request).dashboards
    series, totals = dashboards.costs(caller.scope, services_of(request).catalog_admin.catalog, window, group_by, top)
    return CostReport(
        start=window.start,
        end=window.end,
        granularity=granularity.value,
        group_by=group_by.value,
        totals=[CostTotalOut(**{**vars(total), "amount": _cents(total.amount, total.currency)}) for total in totals],
        series=[CostPointOut(**{**vars(point), "amount": _cents(point.amount, point.currency)}) for point in series],
    )


@router.get("/costs/month-to-date", response_model=MonthToDateReport)
def month_to_date(request: Request, caller: UsageReader, top: Top = None) -> MonthToDateReport:
    """Each customer's cost this month so far and its forecast to the month's end, highest first."""
    return month_to_date_report(request, caller, datetime.now(UTC), top)


def month_to_date_report(
    request: Request,
    caller: Caller,
    now: datetime,
    top: int | None,
    to_date: dict[tuple[str, str], Decimal] | None = None,
) -> MonthToDateReport:
    """``month_to_date`` at ``now``, from the costs so far per customer and currency if the
    caller has them (``Dashboards.month_to_date``)."""
    dashboards: Dashboards = services_of(request).dashboards
    figures = dashboards.month_to_date(caller.scope, now, top, to_date)
    return MonthToDateReport(
        month=f"{now:%Y-%m}",
        as_of=now,
        customers=[
            MonthToDateOut(**{**vars(figure), "to_date": _cents(figure.to_date, figure.currency)}) for figure in figures
        ],
    )


def _cents(amount: Decimal, currency: str) -> Decimal:
    """An amount as dashboards show money: once, to the currency's minor unit (the cent)."""
    return round_money(amount, currency)


class CreditNow(BaseModel):
    customer_id: str
    currency: str
    balance: FixedPoint = Field(description="Now, rounded to the cent")
    granted: FixedPoint = Field(description="What the grants in force gave")
    burn_rate_per_hour: FixedPoint = Field(description="billing/burn_rate.py, to 6 places")
    runs_out_at: datetime | None


class BalancePoint(BaseModel):
    at: datetime = Field(description="The end of a bucket (now for the last one)")
    customer_id: str
    currency: str
    balance: FixedPoint = Field(description="As the ledger stood then, rounded to the cent")


class CreditReport(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    start: datetime = Field(alias="from", description="Inclusive, UTC")
    end: datetime = Field(alias="to", description="Exclusive, UTC")
    granularity: str
    as_of: datetime
    customers: list[CreditNow] = Field(description="Lowest balance first")
    series: list[BalancePoint] = Field(description="The burn-down: each customer's balance at each bucket's end")


@router.get("/costs/credit", response_model=CreditReport, response_model_by_alias=True)
def credit(
    request: Request,
    caller: CreditReader,
    start: Annotated[
        datetime | None, Query(alias="from", description="Inclusive; default: start of this month")
    ] = None,
    end: Annotated[datetime | None, Query(alias="to", description="Exclusive; default: now")] = None,
    granularity: Granularity = Granularity.DAY,
) -> CreditReport:
    """Prepaid credit of every customer the caller sees that holds some: the balance now, the burn
    rate and when it runs out, and the burn-down (the balance at each bucket's end)."""
    now = datetime.now(UTC)
    window = CostWindow(start or now.replace(day=1, hour=0, minute=0, second=0, microsecond=0), end or now, granularity)
    visible = None if caller.scope.everything else set(caller.scope.customers or ())
    wallets = services_of(request).credit.wallets(visible, now)
    rates = services_of(request).dashboards.recent_costs(caller.scope, now)
    boundaries = [*bucket_ends(window.start, min(window.end, now), granularity.value), min(window.end, now)]
    customers, series = [], []
    for customer_id, wallet in sorted(wallets.items()):
        for currency, balance in sorted(wallet.balance(now).items()):
            rate = rate_of(rates, (customer_id, currency))
            granted = wallet.granted(now).get(currency, Decimal(0))
            customers.append(
                CreditNow(
                    customer_id=customer_id,
                    currency=currency,
                    balance=_cents(balance, currency),
                    granted=_cents(granted, currency),
                    burn_rate_per_hour=shown_rate(rate),
                    runs_out_at=runs_out_at(balance, rate, now),
                )
            )
            series += [
                BalancePoint(
                    at=at,
                    customer_id=customer_id,
                    currency=currency,
                    balance=_cents(wallet.balance(at).get(currency, Decimal(0)), currency),
                )
                for at in sorted(set(boundaries))
            ]
    customers.sort(key=lambda figure: (figure.balance, figure.customer_id))
    return CreditReport(
        start=window.start, end=window.end, granularity=granularity.value, as_of=now, customers=customers, series=series
    )


@router.get("/ingest", response_model=IngestReport)
def ingest(request: Request, _caller: OperationsReader) -> IngestReport:
    """How fresh the stored usage is and how fast events are being stored."""
    dashboards: Dashboards = services_of(request).dashboards
    return IngestReport.model_validate(dashboards.ingest(datetime.now(UTC)), from_attributes=True)
