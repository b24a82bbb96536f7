"""A partner's prepaid credit burned as its customers' usage arrives, not only at the close.

The provider bills a partner on the month's totals: its plans' allowances and tiers apply to the
usage of all the partner's customers together. So a partner's credit cannot burn hour by hour
like a customer's. Instead, each pass prices the month so far of every partner that holds credit
and whose customers' usage changed, the way the close will (``billing.invoices.partner_usage_so_far``).
It burns the result as the charges of the invoice the close will draft
(``invoice/<id>/<product>/<meter>``). Each pass records only the difference. When the close then
pays that invoice from credit, it burns only what the usage so far did not bill: fees, one-time
charges, commitments, and events stored after the last pass. Once a close has drafted a month,
the close alone pays it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime

from api.credit_accounts import RESETTLE_MARGIN, CreditAccounts, Pricing, invoice_record_charges
from billing.burn_rate import RecentCost
from billing.catalog import Catalog
from billing.credits import CHARGING, INVOICE_CHARGE, ZERO, Charge
from billing.invoices import UsageTotal, invoice_id_for, partner_usage_so_far
from billing.periods import Period
from billing.pricing import price_changes
from billing.records import InvoiceRecord
from meterline.exceptions import MeterlineError
from storage.billed_usage import PeriodUsage
from storage.credit_store import CreditStore

log = logging.getLogger(__name__)


class PartnerCredit:
    def __init__(self, accounts: CreditAccounts, store: CreditStore, usage: PeriodUsage) -> None:
        self._accounts = accounts
        self._store = store
        self._usage = usage
        self._last_pass: datetime | None = None
        self._priced_with: Catalog | None = None

    def burn(self, catalog: Catalog, watched: set[str], now: datetime) -> set[str]:
        """Burn the month so far (and the month before, until it is closed) of the partners
        holding credit whose customers' usage was stored since the last pass (of any hour of
        those months), or among ``watched`` (a grant or void); of every one of them the first
        time and whenever the catalog changed (a discount, a price). The partners it priced."""
        this_month = Period.containing(now.date())
        months = [this_month.previous(), this_month]
        partners = {partner.id for partner in catalog.partners} & self._accounts.holders(now)
        touched = partners
        if partners and self._last_pass is not None and catalog is self._priced_with:
            partner_of = {c.id: c.partner_id for c in catalog.customers if c.partner_id in partners}
            since = self._last_pass - RESETTLE_MARGIN
            used = (
                self._store.customers_with_usage(months[0].start, this_month.end, since, set(partner_of))
                if partner_of
                else set()
            )
            touched = {partner_of[customer] for customer in used} | (watched & partners)
        self._last_pass, self._priced_with = now, catalog
        if touched:
            self._accounts.burn_so_far(touched, months, self._pricing(catalog), now)
        return touched

    def recent_cost(
        self, catalog: Catalog, partner_id: str, first_usage_hour: datetime | None, now: datetime
    ) -> dict[str, RecentCost]:
        """A partner's pace of spending, for its burn rate (``billing.burn_rate``): what its credit
        was charged for the month so far, over the hours from its customers' first usage of the
        month (``first_usage_hour``, of the recent hours; None: the month's start) to now. Its
        customers' usage is priced on the month, not the hour, so there is no hourly cost."""
        month = Period.containing(now.date())
        prefix = f"{INVOICE_CHARGE}{invoice_id_for(month, catalog.provider.id, partner_id)}/"
        ledger = self._accounts.ledger(partner_id)
        charged = -sum((e.amount for e in ledger if e.kind in CHARGING and e.reference.startswith(prefix)), ZERO)
        since = max(month.start, first_usage_hour or month.start)
        return {catalog.currency_of(partner_id): RecentCost(charged, since, now)} if charged else {}

    def _pricing(self, catalog: Catalog) -> Pricing:
        def price(month: Period, partners: set[str], at: datetime) -> dict[str, list[Charge]]:
            partner_of = {c.id: c.partner_id for c in catalog.customers if c.partner_id in partners}
            totals = self._usage.totals(month, price_changes(catalog, month), None, set(partner_of))
            by_partner: dict[str, list[UsageTotal]] = defaultdict(list)
            for total in totals:
                by_partner[partner_of[total.customer_id]].append(total)
            charges = {}
            for partner in sorted(partners):
                try:
                    so_far = partner_usage_so_far(catalog, month, partner, by_partner[partner])
                except MeterlineError as error:  # the close will refuse it too, and say why
                    log.error("the usage so far of partner %s in %s cannot be priced: %s", partner, month.name, error)
                    continue
                charges[partner] = invoice_record_charges(InvoiceRecord.draft(so_far, 0, at), at)
            return charges

        return price
