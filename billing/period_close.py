"""Close a period: read its exact usage once, build every invoice, store the drafts.

Closing again (on demand, or after late usage) rebuilds the period's drafts as a new revision
and leaves issued and paid invoices alone. A voided invoice does not block its party: the next
close bills the period again under a new id (``…~2``), to be issued with a new number. Usage
that reaches an already issued invoice's period (up to three months back) is billed as an
adjustment line on the party's next invoice.

Only a month that can be billed is closed on demand (``check_billable``): not one after the
current month, nor one that ends before the catalog's first billable day.

A close at ``now`` bills the events stored by then (the caller reads ``now`` from the sinks'
marks, ``storage.clock``, so nothing stamped earlier is still being written); the drill-down of each
invoice shows exactly those events, and whatever is stored later is late usage.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Protocol

from billing.catalog import Catalog
from billing.completeness import Gap, gaps_touching
from billing.invoices import (
    OWED,
    DocumentType,
    InvoiceLine,
    InvoiceStatus,
    UsageTotal,
    build_invoices,
    invoice_id_for,
    late_usage_adjustments,
)
from billing.periods import Period
from billing.price_plans import ZERO
from billing.pricing import PriceChange, price_changes
from billing.records import InvoiceRecord
from billing.scope import EVERYTHING, Scope
from meterline.exceptions import IncompleteUsage, InvalidRange
from meterline.late_usage import LATE_USAGE_MONTHS


class Ledger(Protocol):
    """Where invoices are kept (``storage.ledger``)."""

    def headers(
        self, scope: Scope, *, period: str | None = None, buyer_id: str | None = None
    ) -> list[InvoiceRecord]: ...

    def adjustments_to(self, adjusted: Period, *, excluding: Period) -> dict[tuple[str, str], Decimal]: ...

    def own_adjustments(self, period: Period) -> dict[str, Decimal]: ...

    def save(self, records: list[InvoiceRecord], *, with_lines: bool = True) -> None: ...


class PeriodUsage(Protocol):
    """A period's exact usage (``storage.billed_usage``)."""

    def totals(
        self,
        period: Period,
        price_changes: list[PriceChange],
        cutoff: datetime | None,
        customers: Collection[str] | None = None,
    ) -> list[UsageTotal]: ...


SETTLED = OWED | {InvoiceStatus.PAID}
LOOKBACK_PERIODS = LATE_USAGE_MONTHS
"""How many months back a close looks for usage that reached already issued invoices, unless
told otherwise: as many as the intake accepts usage for."""


@dataclass(frozen=True)
class CloseResult:
    period: str
    drafted: int
    """Invoices written as (new revisions of) drafts."""
    kept: int
    """Invoices left as they were because they are already issued, paid or void."""
    voided: int
    """Drafts of an earlier close that nothing bills any more (a buyer left the catalog), voided."""
    unbilled_customers: list[str]
    """Customers with rated usage but no catalog entry: their usage waits, it is not dropped."""
    unpriced: dict[str, str] = field(default_factory=dict)
    """Buyers whose invoice the catalog cannot price (no plan or fee in force in their currency),
    with the reason: left out of this close, billed by one after the catalog is put right."""


def check_billable(catalog: Catalog, period: Period, today: date) -> None:
    """Refuse a close asked for a month that cannot be billed, before anything is drafted.

    A month after ``today``'s has nothing to bill yet, and its drafts would show customers
    invoices for the future (the current month may be closed, as a preview); a month that ends
    before the catalog's first billable day (the earliest subscription start or one-time charge)
    has nothing to bill ever. The scheduler closes only past months and does not ask."""
    current = Period.containing(today)
    if period > current:
        raise InvalidRange(
            f"period {period.name} has not begun: months up to the current one ({current.name}, "
            "as a preview) can be closed"
        )
    first = first_billable_day(catalog)
    if first is not None and period.end_day <= first:
        raise InvalidRange(
            f"period {period.name} ends before the catalog's first billable day, {first.isoformat()} "
            "(its earliest subscription start or one-time charge): there is nothing to bill"
        )


def first_billable_day(catalog: Catalog) -> date | None:
    """The earliest subscription start or one-time charge day; None if the catalog has neither."""
    days = [s.start for s in catalog.subscriptions] + [charge.day for charge in catalog.one_time_charges]
    return min(days, default=None)


def close_period(
    ledger: Ledger,
    usage: PeriodUsage,
    catalog: Catalog,
    period: Period,
    now: datetime,
    lookback_periods: int = LOOKBACK_PERIODS,
    gaps: Sequence[Gap] = (),
    force: bool = False,
    pay_from_credit: Callable[[list[InvoiceRecord]], list[InvoiceRecord]] = list,
) -> CloseResult:
    """Draft the period's invoices, refusing while ``gaps`` (of every producer) may hold some of
    its usage, unless ``force``d: then each draft's notes name the gaps. ``pay_from_credit``
    pays each draft from its buyer's prepaid credit, as far as it goes."""
    missing = gaps_touching(gaps, period)
    if missing and not force:
        listed = "; ".join(gap.describe() for gap in missing[:20])
        raise IncompleteUsage(
            f"usage of {period.name} may be missing: {len(missing)} gaps ({listed}); "
            "close with force=true to bill anyway"
        )
    notes = (
        f"Closed by force while {len(missing)} gaps in the usage received may hold usage of this period: "
        + "; ".join(gap.describe() for gap in missing[:20])
        if missing
        else ""
    )
    totals = usage.totals(period, price_changes(catalog, period), now)
    known = {customer.id for customer in catalog.customers}
    unpriced: dict[str, str] = {}
    adjustments = late_usage_lines(ledger, usage, catalog, period, now, lookback_periods, unpriced)
    billings = _billings_by_parties(ledger.headers(EVERYTHING, period=period.name))
    drafts = []
    built = build_invoices(catalog, period, totals, adjustments, unpriced)
    for invoice in built:
        billed = billings.get(invoice.parties, [])
        latest = billed[-1] if billed else None
        if latest is None:
            drafts.append(InvoiceRecord.draft(invoice, 1, now, notes))
        elif latest.status is InvoiceStatus.DRAFT:
            drafts.append(
                InvoiceRecord.draft(replace(invoice, invoice_id=latest.invoice_id), latest.revision + 1, now, notes)
            )
        elif latest.status is InvoiceStatus.VOID:
            again = invoice_id_for(period, invoice.issuer.id, invoice.buyer_id, billing=len(billed) + 1)
            drafts.append(InvoiceRecord.draft(replace(invoice, invoice_id=again), 1, now, notes))
    # a draft this close does not rebuild (its buyer left the catalog, or has nothing to bill
    # now) is voided, so that it is never issued; credit it took comes back with it
    rebuilt = {invoice.parties for invoice in built}
    stale = [
        replace(
            records[-1].becoming(InvoiceStatus.VOID, now),
            notes=f"Voided by the close of {now:%Y-%m-%d %H:%M} UTC: nothing of it is billed any more",
        )
        for parties, records in billings.items()
        if records[-1].status is InvoiceStatus.DRAFT and parties not in rebuilt and records[-1].buyer_id not in unpriced
    ]
    paid = pay_from_credit([*drafts, *stale])
    ledger.save([record for record in paid if record.status is InvoiceStatus.DRAFT])
    ledger.save([record for record in paid if record.status is InvoiceStatus.VOID], with_lines=False)
    return CloseResult(
        period=period.name,
        drafted=len(drafts),
        voided=len(stale),
        kept=sum(records[-1].status is not InvoiceStatus.DRAFT for records in billings.values()),
        unbilled_customers=sorted({total.customer_id for total in totals} - known),
        unpriced=unpriced,
    )


def _billings_by_parties(records: list[InvoiceRecord]) -> dict[tuple[str, str], list[InvoiceRecord]]:
    """Each party's invoices of a period (credit notes aside), oldest billing first."""
    billings: dict[tuple[str, str], list[InvoiceRecord]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (len(r.invoice_id), r.invoice_id)):
        if record.document_type is DocumentType.INVOICE:
            billings[(record.issuer_id, record.buyer_id)].append(record)
    return billings


def late_usage_lines(
    ledger: Ledger,
    usage: PeriodUsage,
    catalog: Catalog,
    period: Period,
    cutoff: datetime,
    lookback_periods: int,
    unpriced: dict[str, str] | None = None,
) -> dict[str, list[InvoiceLine]]:
    """Adjustment lines for each of the last ``lookback_periods`` months with issued invoices.

    What an earlier month has billed for its own usage is its issued subtotal without its own
    adjustment lines (those corrected months before it), plus the adjustments to it already on
    other months' live invoices: so a correction is billed once, however many closes see it.
    A buyer the catalog cannot price is noted in ``unpriced`` (if given) with the reason.
    """
    lines: dict[str, list[InvoiceLine]] = defaultdict(list)
    earlier = period
    for _ in range(lookback_periods):
        earlier = earlier.previous()
        settled = [r for r in ledger.headers(EVERYTHING, period=earlier.name) if r.status in SETTLED]
        if not settled:
            continue
        adjusted = ledger.adjustments_to(earlier, excluding=period)
        own = ledger.own_adjustments(earlier)
        billed = {
            (r.issuer_id, r.buyer_id): r.subtotal
            - own.get(r.invoice_id, ZERO)
            + adjusted.get((r.issuer_id, r.buyer_id), ZERO)
            for r in settled
            # rebuilt in another currency than it was issued in (its buyer's changed since), a
            # month's usage bills a figure that cannot be compared with it: never subtracted
            if r.document_type is DocumentType.INVOICE and r.currency == catalog.currency_of(r.buyer_id)
        }
        known_now = usage.totals(earlier, price_changes(catalog, earlier), cutoff)
        for buyer_id, line in late_usage_adjustments(catalog, earlier, known_now, billed, unpriced).items():
            lines[buyer_id].append(line)
    return lines
