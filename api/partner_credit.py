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

from api.credit_accounts import CreditAccounts, Pricing, invoice_record_charges
from billing.burn_rate import RecentCost
from billing.catalog import Catalog
from billing.credits import CHARGING, ZERO, Charge
from billing.invoices import UsageTotal, invoice_id_for, partner_usage_so_far
from billing.periods import Period
from billing.pricing import price_changes
from billing.records import InvoiceRecord
from meterline.exceptions import MeterlineError
from storage.billed_usage import PeriodUsage

log = logging.getLogger(__name__)


class PartnerCredit:
    def __init__(self, accounts: CreditAccounts, usage: PeriodUsage) -> None:
        self._accounts = accounts
        self._usage = usage

    def burn(self, catalog: Catalog, watched: set[str], now: datetime) -> int:
        """Burn the month so far (and the month before, until it is closed) of the partners
        among ``watched`` or whose customers are; how many ledger entries that wrote."""
        resold = {c.partner_id for c in catalog.customers if c.id in watched and c.partner_id}
        partners = (resold | watched) & {partner.id for partner in catalog.partners}
        if not partners:
            return 0
        this_month = Period.containing(now.date())
        return self._accounts.burn_so_far(partners, [this_month.previous(), this_month], self._pricing(catalog), now)

    def recent_cost(self, catalog: Catalog, partner_id: str, now: datetime) -> dict[str, RecentCost]:
        """A partner's pace of spending, for its burn rate (``billing.burn_rate``): what its credit
        was charged for the month so far, over the month's hours so far. Its customers' usage is
        priced on the month, not the hour, so there is no hourly cost to measure."""
        month = Period.containing(now.date())
        prefix = f"invoice/{invoice_id_for(month, catalog.provider.id, partner_id)}/"
        ledger = self._accounts.ledger(partner_id)
        charged = -sum((e.amount for e in ledger if e.kind in CHARGING and e.reference.startswith(prefix)), ZERO)
        return {catalog.currency: RecentCost(charged, month.start, now)} if charged else {}

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
