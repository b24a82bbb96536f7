"""Close each month on its own once the grace period for late usage has passed.

A close that fails is logged, counted in ``meterline_period_close_failures_total`` and tried
again at the next check; it never stops the API. Closing on demand stays available through
``POST /v1/periods/{period}/close``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from starlette.concurrency import run_in_threadpool

from api import metrics
from billing.catalog import Catalog
from billing.completeness import Gap
from billing.period_close import close_period
from billing.periods import Period
from billing.records import InvoiceRecord
from billing.scope import EVERYTHING
from storage.billed_usage import PeriodUsage
from storage.clock import StoredThrough
from storage.ledger import Ledger

log = logging.getLogger(__name__)


def period_due(now: datetime, grace: timedelta) -> Period | None:
    """The last month, once ``grace`` has passed since it ended; None before that."""
    last_month = Period.containing(now.date()).previous()
    return last_month if now >= last_month.end + grace else None


def _paying(
    pay_from_credit: Callable[[list[InvoiceRecord], datetime], list[InvoiceRecord]], now: datetime
) -> Callable[[list[InvoiceRecord]], list[InvoiceRecord]]:
    return lambda drafts: pay_from_credit(drafts, now)


async def close_periods_when_due(
    ledger: Ledger,
    usage: PeriodUsage,
    current_catalog: Callable[[], Catalog],
    clock: StoredThrough,
    lookback_periods: int,
    grace: timedelta,
    check_every_s: float,
    gaps: Callable[[], list[Gap]],
    pay_from_credit: Callable[[list[InvoiceRecord], datetime], list[InvoiceRecord]],
) -> None:
    """A month with gaps in the usage received is not closed until they are filled (or someone
    closes it by force)."""
    done: set[str] = set()
    while True:
        period = period_due(datetime.now(UTC), grace)
        if period is not None and period.name not in done:
            try:
                if not await run_in_threadpool(ledger.headers, EVERYTHING, period=period.name):
                    missing = await run_in_threadpool(gaps)
                    now = clock.now()
                    result = await run_in_threadpool(
                        close_period,
                        ledger,
                        usage,
                        current_catalog(),
                        period,
                        now,
                        lookback_periods,
                        missing,
                        False,
                        _paying(pay_from_credit, now),
                    )
                    log.info(
                        "closed %s on its own, %.0f h after it ended (METERLINE_AUTO_CLOSE, METERLINE_CLOSE_GRACE_H): "
                        "%d draft invoices, none issued; GET /v1/invoices?period=%s lists them",
                        period.name,
                        grace.total_seconds() / 3600,
                        result.drafted,
                        period.name,
                    )
                    for buyer, reason in sorted(result.unpriced.items()):
                        log.error("closing %s left %s unbilled: %s; close it again once the catalog prices it",
                                  period.name, buyer, reason)  # fmt: skip
                done.add(period.name)
            except Exception:
                metrics.PERIOD_CLOSE_FAILURES.inc()
                log.exception("closing %s failed; trying again in %.0f s", period.name, check_every_s)
        await asyncio.sleep(check_every_s)
