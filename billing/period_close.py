"""Close a period: read its rated usage once, build every invoice, store the drafts.

Closing again (on demand, or after late usage) rebuilds the period's drafts as a new revision
and leaves issued, paid and void invoices alone. Usage that reaches an already issued invoice's
period (up to three months back) is billed as an adjustment line on the party's next invoice.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from billing.adapters.clickhouse_ledger import InvoiceRecord, Ledger
from billing.catalog import Catalog
from billing.invoices import InvoiceLine, InvoiceStatus, build_invoices, late_usage_adjustments
from billing.periods import Period
from billing.price_plans import ZERO

SETTLED = {InvoiceStatus.ISSUED, InvoiceStatus.PAID}
LOOKBACK_PERIODS = 3
"""How many months back a close looks for usage that reached already issued invoices."""


@dataclass(frozen=True)
class CloseResult:
    period: str
    drafted: int
    """Invoices written as (new revisions of) drafts."""
    kept: int
    """Invoices left as they were because they are already issued, paid or void."""
    unbilled_customers: list[str]
    """Customers with rated usage but no catalog entry: their usage waits, it is not dropped."""


def close_period(ledger: Ledger, catalog: Catalog, period: Period, now: datetime) -> CloseResult:
    usage = ledger.usage_totals(period)
    known = {customer.id for customer in catalog.customers}
    adjustments = _late_usage(ledger, catalog, period)
    existing = {record.invoice_id: record for record in ledger.headers(period=period.name)}
    drafts = []
    for invoice in build_invoices(catalog, period, usage, adjustments):
        previous = existing.get(invoice.invoice_id)
        if previous is not None and previous.status is not InvoiceStatus.DRAFT:
            continue
        revision = previous.revision + 1 if previous else 1
        drafts.append(InvoiceRecord.draft(invoice, revision, now))
    ledger.save(drafts)
    return CloseResult(
        period=period.name,
        drafted=len(drafts),
        kept=sum(record.status is not InvoiceStatus.DRAFT for record in existing.values()),
        unbilled_customers=sorted({total.customer_id for total in usage} - known),
    )


def _late_usage(ledger: Ledger, catalog: Catalog, period: Period) -> dict[str, list[InvoiceLine]]:
    """Adjustment lines for each of the last LOOKBACK_PERIODS months with issued invoices.

    What an earlier month has billed for its own usage is its issued subtotal without its own
    adjustment lines (those corrected months before it), plus the adjustments to it already on
    other months' live invoices: so a correction is billed once, however many closes see it.
    """
    lines: dict[str, list[InvoiceLine]] = defaultdict(list)
    earlier = period
    for _ in range(LOOKBACK_PERIODS):
        earlier = earlier.previous()
        settled = [r for r in ledger.headers(period=earlier.name) if r.status in SETTLED]
        if not settled:
            continue
        adjusted = ledger.adjustments_to(earlier, excluding=period)
        own = ledger.own_adjustments(earlier)
        billed = {
            r.invoice_id: r.subtotal - own.get(r.invoice_id, ZERO) + adjusted.get(r.invoice_id, ZERO) for r in settled
        }
        for buyer_id, line in late_usage_adjustments(catalog, earlier, ledger.usage_totals(earlier), billed).items():
            lines[buyer_id].append(line)
    return lines
