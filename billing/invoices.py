"""Build a period's invoices from exact usage totals and the catalog - a pure function.

One invoice per billed party and issuer: each customer is invoiced by its seller (the provider,
or its partner at the partner's prices), and each partner is invoiced by the provider for all of
its customers' usage and subscriptions at the provider's prices, less the partner's discount.

Usage is priced by the rule of ``Catalog.find_plan`` at the usage's time: the period's exact
usage is cut at every instant a plan changes, each part is priced by the plan in force then, and
the usage one plan prices (several dimensions under a plan for all of them, several customers on
a partner's invoice) is totalled, so that its allowance, tiers, packages and commitment apply
once to that total. A plan's commitment is owed, with or without usage, for the days the rule
chooses the plan at 00:00 UTC, prorated to the day. Every line is rounded once to the currency;
discount and tax are computed on the rounded lines.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction

from billing.catalog import Catalog, Customer, Interval, Issuer, OneTimeCharge, Subscription, Supplier
from billing.money import TaxRate, percent_of, round_money, shown_quantity
from billing.periods import Period
from billing.price_plans import ANY_DIMENSION, ZERO, PricePlan
from meterline.exceptions import InvalidCatalog


class LineKind(StrEnum):
    RECURRING = "recurring"
    USAGE = "usage"
    ONE_TIME = "one_time"
    ADJUSTMENT = "adjustment"


class DocumentType(StrEnum):
    INVOICE = "invoice"
    CREDIT_NOTE = "credit_note"


class InvoiceStatus(StrEnum):
    """draft -> issued -> paid | payment_failed | void; a draft may also be voided.

    A failed card payment leaves the invoice owed (``payment_failed``) until a later attempt or
    another payment pays it, or it is voided. A payment refunded in full makes a paid invoice
    ``refunded``: owed again, until paid again or voided (its credit note cancels it). Nothing
    leaves void."""

    DRAFT = "draft"
    ISSUED = "issued"
    PAYMENT_FAILED = "payment_failed"
    PAID = "paid"
    REFUNDED = "refunded"
    VOID = "void"

    def can_become(self, target: InvoiceStatus) -> bool:
        return target in _NEXT[self]

    @property
    def owed(self) -> bool:
        """Whether the buyer is asked to pay it: issued, and neither paid nor void."""
        return self in OWED


OWED = frozenset({InvoiceStatus.ISSUED, InvoiceStatus.PAYMENT_FAILED, InvoiceStatus.REFUNDED})
_NEXT = {
    InvoiceStatus.DRAFT: {InvoiceStatus.ISSUED, InvoiceStatus.VOID},
    InvoiceStatus.ISSUED: {InvoiceStatus.PAID, InvoiceStatus.PAYMENT_FAILED, InvoiceStatus.VOID},
    InvoiceStatus.PAYMENT_FAILED: {InvoiceStatus.PAID, InvoiceStatus.VOID},
    InvoiceStatus.PAID: {InvoiceStatus.REFUNDED},
    InvoiceStatus.REFUNDED: {InvoiceStatus.PAID, InvoiceStatus.VOID},
    InvoiceStatus.VOID: set(),
}


@dataclass(frozen=True)
class UsageTotal:
    """A customer's exact usage of one meter and dimension over ``[start, end)``: a period, or
    the part of it between two instants where a price changed."""

    customer_id: str
    meter: str
    dimension: str
    unit: str
    quantity: Fraction
    start: datetime
    end: datetime


@dataclass(frozen=True)
class UsageScope:
    """Usage of one dimension over ``[start, end)``: part of what a usage line bills."""

    dimension: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class InvoiceLine:
    kind: LineKind
    description: str
    quantity: Decimal
    unit: str
    unit_price: Decimal
    amount: Decimal
    meter: str = ""
    dimension: str = ""
    """For usage lines: the dimension of the plan that priced them (``*`` for all)."""
    adjusts_period: str = ""
    """For adjustment lines: the earlier, already issued period they correct."""
    scopes: tuple[UsageScope, ...] = ()
    """For usage lines: what the drill-down selects, over the invoice's customers."""


@dataclass(frozen=True)
class Invoice:
    invoice_id: str
    period: Period
    issuer: Issuer
    buyer_id: str
    buyer_name: str
    currency: str
    lines: tuple[InvoiceLine, ...]
    covered_customers: tuple[str, ...]
    """Whose usage the invoice bills: the buyer itself, or a partner's customers."""
    discount_percent: Decimal
    tax: TaxRate
    subtotal: Decimal = field(init=False)
    discount: Decimal = field(init=False)
    net: Decimal = field(init=False)
    tax_amount: Decimal = field(init=False)
    total: Decimal = field(init=False)

    def __post_init__(self) -> None:
        subtotal = sum((line.amount for line in self.lines), ZERO)
        discount = round_money(percent_of(subtotal, self.discount_percent), self.currency)
        net, tax_amount = self.tax.split(subtotal - discount, self.currency)
        for name, value in (
            ("subtotal", subtotal),
            ("discount", discount),
            ("net", net),
            ("tax_amount", tax_amount),
            ("total", net + tax_amount),
        ):
            object.__setattr__(self, name, value)

    @property
    def parties(self) -> tuple[str, str]:
        """(issuer, buyer): one live invoice per pair and period, whatever its id."""
        return self.issuer.id, self.buyer_id


def invoice_id_for(period: Period, issuer_id: str, buyer_id: str, billing: int = 1) -> str:
    """The id of a party's invoice for a period; ``billing`` counts how often it was billed
    again after a void (``2026-11.acme.cust-1``, then ``2026-11.acme.cust-1~2``: no identifier
    holds a ``~``, so a rebill never takes another party's id)."""
    base = f"{period.name}.{issuer_id}.{buyer_id}"
    return base if billing == 1 else f"{base}~{billing}"


Adjustments = Mapping[str, Sequence[InvoiceLine]]
"""Keyed by the party billed: lines correcting its earlier, already issued invoices."""


def build_invoices(
    catalog: Catalog,
    period: Period,
    usage: Iterable[UsageTotal],
    adjustments: Adjustments | None = None,
    unpriced: dict[str, str] | None = None,
) -> list[Invoice]:
    """Every invoice of the period: customers' first, then partners'. With ``unpriced``, an
    invoice the catalog cannot price (no plan or fee in force in its currency) is left out and
    its buyer noted there with the reason, so that one buyer does not stop every other's."""
    by_customer: dict[str, list[UsageTotal]] = defaultdict(list)
    for total in usage:
        by_customer[total.customer_id].append(total)
    invoices = []
    for customer in catalog.customers:
        with _noting(unpriced, customer.id):
            invoices.append(_customer_invoice(catalog, period, customer, by_customer.get(customer.id, [])))
    for partner in catalog.partners:
        customers = [c for c in catalog.customers if c.partner_id == partner.id]
        if customers:
            usage_of_customers = [t for c in customers for t in by_customer.get(c.id, [])]
            with _noting(unpriced, partner.id):
                invoices.append(_partner_invoice(catalog, period, partner.id, customers, usage_of_customers))
    adjustments = adjustments or {}
    invoices = [
        replace(invoice, lines=(*invoice.lines, *adjustments[invoice.buyer_id]))
        if invoice.buyer_id in adjustments
        else invoice
        for invoice in invoices
    ]
    return [invoice for invoice in invoices if invoice.lines]


@contextmanager
def _noting(unpriced: dict[str, str] | None, buyer_id: str) -> Iterator[None]:
    """A catalog error building ``buyer_id``'s invoice: noted in ``unpriced`` if given, else raised."""
    try:
        yield
    except InvalidCatalog as error:
        if unpriced is None:
            raise
        unpriced[buyer_id] = str(error)


def late_usage_adjustments(
    catalog: Catalog,
    earlier: Period,
    usage: Iterable[UsageTotal],
    billed: Mapping[tuple[str, str], Decimal],
    unpriced: dict[str, str] | None = None,
) -> dict[str, InvoiceLine]:
    """Lines that bring issued invoices of ``earlier`` up to date with the usage known now.

    ``billed`` is the subtotal issued per (issuer, buyer). Usage that arrived after the close,
    or a correction, is billed (or credited) on the next invoice rather than by editing an
    issued one.
    """
    lines = {}
    for invoice in build_invoices(catalog, earlier, usage, unpriced=unpriced):
        if invoice.parties not in billed:
            continue
        difference = invoice.subtotal - billed[invoice.parties]
        if difference:
            description = f"Adjustment to {earlier.name}: usage received after its invoice was issued"
            lines[invoice.buyer_id] = InvoiceLine(
                LineKind.ADJUSTMENT,
                description,
                Decimal(1),
                "unit",
                difference,
                difference,
                adjusts_period=earlier.name,
            )
    return lines


def _customer_invoice(catalog: Catalog, period: Period, customer: Customer, usage: list[UsageTotal]) -> Invoice:
    seller = catalog.seller_of(customer)
    currency = catalog.currency_of(customer.id)
    lines = _fee_lines(catalog, period, seller.id, catalog.subscriptions_of.get(customer.id, []), currency)
    lines += _one_time_lines(period, catalog.one_time_charges_of.get(customer.id, []))
    lines += _usage_lines(catalog, period, customer, usage, currency)
    return Invoice(
        invoice_id=invoice_id_for(period, seller.id, customer.id),
        period=period,
        issuer=seller,
        buyer_id=customer.id,
        buyer_name=customer.name,
        currency=currency,
        lines=tuple(lines),
        covered_customers=(customer.id,),
        discount_percent=customer.discount_percent,
        tax=catalog.tax_rate(customer.jurisdiction),
    )


def _partner_invoice(
    catalog: Catalog,
    period: Period,
    partner_id: str,
    customers: list[Customer],
    usage: list[UsageTotal],
    whole_period: bool = True,
) -> Invoice:
    """The provider's invoice to a partner; without ``whole_period``, only what its customers'
    usage bills (no fee, one-time charge or commitment)."""
    partner = catalog.partner(partner_id)
    provider = catalog.provider.id
    currency = catalog.currency_of(partner_id)
    if whole_period:
        subscriptions = [s for customer in customers for s in catalog.subscriptions_of.get(customer.id, [])]
        supplied = [
            charge
            for customer in customers
            for charge in catalog.one_time_charges_of.get(customer.id, [])
            if charge.supplier is Supplier.PROVIDER
        ]
        fees = _fee_lines(catalog, period, provider, subscriptions, currency)
        lines = _merge_alike(fees) + _one_time_lines(period, supplied)
    else:
        lines = []
    lines += _usage_lines(catalog, period, None, usage, currency, commitments=whole_period)
    return Invoice(
        invoice_id=invoice_id_for(period, provider, partner.id),
        period=period,
        issuer=catalog.provider,
        buyer_id=partner.id,
        buyer_name=partner.name,
        currency=currency,
        lines=tuple(lines),
        covered_customers=tuple(sorted(c.id for c in customers)),
        discount_percent=partner.discount_percent,
        tax=catalog.tax_rate(partner.jurisdiction),
    )


def partner_usage_so_far(catalog: Catalog, period: Period, partner_id: str, usage: Iterable[UsageTotal]) -> Invoice:
    """The part of a partner's invoice that its customers' ``usage`` so far bills: its usage
    lines, priced at the provider's list as the close prices them, less the partner's discount,
    with its tax. Fees, one-time charges and commitments are owed for the whole period and left
    to the close. What a partner's prepaid credit burns before the close."""
    customers = [c for c in catalog.customers if c.partner_id == partner_id]
    return _partner_invoice(catalog, period, partner_id, customers, list(usage), whole_period=False)


def _one_time_lines(period: Period, charges: list[OneTimeCharge]) -> list[InvoiceLine]:
    return [
        InvoiceLine(LineKind.ONE_TIME, charge.description, Decimal(1), "unit", charge.amount, charge.amount)
        for charge in charges
        if period.first_day <= charge.day < period.end_day
    ]


def _fee_lines(
    catalog: Catalog, period: Period, seller_id: str, subscriptions: list[Subscription], currency: str
) -> list[InvoiceLine]:
    """Recurring fees (monthly prorated to the day, yearly in full in the anniversary month) and set-up fees."""
    lines = []
    products = {product.id: product.name for product in catalog.products}
    for subscription in sorted(subscriptions, key=lambda s: (s.product_id, s.id)):
        days = period.days_active(subscription.start, subscription.end)
        if not days:
            continue  # not running in the period: nothing to bill, so no fee to look up
        fee = catalog.fee_for(seller_id, subscription.product_id, period.start, currency)
        name = products[subscription.product_id]
        quantity = Decimal(subscription.quantity)
        if fee.interval is Interval.MONTH:
            amount = round_money(period.prorate(fee.amount * quantity, subscription.start, subscription.end), currency)
            note = "" if days == period.days else f", {days} of {period.days} days"
            lines.append(
                InvoiceLine(LineKind.RECURRING, f"{name} (monthly{note})", quantity, "subscription", fee.amount, amount)
            )
        elif fee.interval is Interval.YEAR and subscription.start.month == period.first_day.month:
            amount = round_money(fee.amount * quantity, currency)
            lines.append(
                InvoiceLine(LineKind.RECURRING, f"{name} (yearly)", quantity, "subscription", fee.amount, amount)
            )
        if fee.setup_fee and period.first_day <= subscription.start < period.end_day:
            amount = round_money(fee.setup_fee * quantity, currency)
            lines.append(InvoiceLine(LineKind.ONE_TIME, f"{name}: set-up", quantity, "unit", fee.setup_fee, amount))
    return lines


def _merge_alike(lines: list[InvoiceLine]) -> list[InvoiceLine]:
    """One line per product and price on a partner's invoice, not one per end customer's subscription."""
    merged: dict[tuple[LineKind, str, Decimal], InvoiceLine] = {}
    for line in lines:
        key = (line.kind, line.description, line.unit_price)
        seen = merged.get(key)
        merged[key] = (
            line
            if seen is None
            else replace(seen, quantity=seen.quantity + line.quantity, amount=seen.amount + line.amount)
        )
    return list(merged.values())


@dataclass(frozen=True)
class _PlanUse:
    """What one plan bills on an invoice: the usage it priced, and the days of the period its
    commitment is owed for."""

    plan: PricePlan
    totals: list[UsageTotal]
    days: list[date]

    def order(self) -> tuple[str, str, datetime]:
        if self.totals:
            return self.plan.meter.value, min(t.dimension for t in self.totals), min(t.start for t in self.totals)
        return self.plan.meter.value, self.plan.dimension, _midnight(self.days[0])


def _usage_lines(
    catalog: Catalog,
    period: Period,
    buyer: Customer | None,
    usage: Iterable[UsageTotal],
    currency: str,
    commitments: bool = True,
) -> list[InvoiceLine]:
    """The lines of each plan that priced some of the usage, applied once to what it priced, and
    the top-up of each commitment in force without usage (without ``commitments``: no top-up at
    all). ``buyer`` is whose plans the pricing rule consults: a customer, or None for a partner
    at the provider's list in ``currency`` (the invoice's)."""
    priced: dict[int, tuple[PricePlan, list[UsageTotal]]] = {}
    for total in usage:
        if total.quantity:
            plan = catalog.plan_for(buyer, total.meter, total.dimension, total.start, currency)
            priced.setdefault(id(plan), (plan, []))[1].append(total)

    def owed(plan: PricePlan) -> list[date]:
        return _days_owed(catalog, period, buyer, plan, currency) if commitments else []  # no day: no minimum

    uses = [_PlanUse(plan, totals, owed(plan)) for plan, totals in priced.values()]
    uses += [
        _PlanUse(plan, [], days)
        for plan in catalog.candidate_plans(buyer, currency)
        if id(plan) not in priced and (days := owed(plan))
    ]
    ordered = sorted(uses, key=_PlanUse.order)
    return [line for use in ordered for line in _plan_lines(catalog, period, use, currency)]


def _plan_lines(catalog: Catalog, period: Period, use: _PlanUse, currency: str) -> list[InvoiceLine]:
    """A plan's charges on the usage it priced or, without usage, its commitment's top-up alone
    (no zero-quantity line), scoped to the days it was in force: a drill-down with no usage."""
    share_in_force = Fraction(len(use.days), period.days)
    if use.totals:
        quantity = sum((total.quantity for total in use.totals), Fraction(0))
        charges = use.plan.charges(quantity, currency, share_in_force)
        scopes = _scopes((total.dimension, total.start, total.end) for total in use.totals)
    else:
        charges = use.plan.top_up(ZERO, currency, share_in_force)
        scopes = _scopes((use.plan.dimension, _midnight(day), _midnight(day + timedelta(days=1))) for day in use.days)
    name = _usage_name(catalog, use.plan, scopes)
    return [
        InvoiceLine(
            LineKind.USAGE,
            f"{name}: {charge.description}" if charge.description else name,
            shown_quantity(charge.quantity),
            use.totals[0].unit if charge.unit is None else charge.unit,
            charge.unit_price,
            charge.amount,
            use.plan.meter.value,
            use.plan.dimension,
            scopes=scopes,
        )
        for charge in charges
    ]


def _days_owed(catalog: Catalog, period: Period, buyer: Customer | None, plan: PricePlan, currency: str) -> list[date]:
    """The days of the period a plan's commitment is owed for (none without one): those at whose
    00:00 UTC the pricing rule chooses it for its own meter and dimension, so a plan taking effect
    at noon owns the next day on."""
    if not plan.minimum_amount:
        return []
    days = [period.first_day + timedelta(days=n) for n in range(period.days)]
    meter, dimension = plan.meter.value, plan.dimension
    return [day for day in days if catalog.find_plan(buyer, meter, dimension, _midnight(day), currency) is plan]


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def _scopes(spans: Iterable[tuple[str, datetime, datetime]]) -> tuple[UsageScope, ...]:
    """Each dimension's ``(dimension, start, end)`` spans, adjacent ones joined (a partner's
    customers share them)."""
    joined: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for dimension, start, end in sorted(spans):
        parts = joined[dimension]
        if parts and parts[-1][1] >= start:
            parts[-1] = (parts[-1][0], max(parts[-1][1], end))
        else:
            parts.append((start, end))
    return tuple(UsageScope(dimension, start, end) for dimension, parts in joined.items() for start, end in parts)


def _usage_name(catalog: Catalog, plan: PricePlan, scopes: tuple[UsageScope, ...]) -> str:
    """``Disk storage (ssd)``, a service's product name (``Service usage (dbaas instance)`` for an
    sku without a product), and the dates when the plan priced only part of the period."""
    dimensions = sorted({scope.dimension for scope in scopes} - {ANY_DIMENSION, ""})
    named = [catalog.product_name(dimension) for dimension in dimensions if catalog.has_product(dimension)]
    unnamed = [dimension.replace("_", " ") for dimension in dimensions if not catalog.has_product(dimension)]
    if plan.meter.is_xaas and not unnamed:
        name = ", ".join(named) or plan.meter.label
    else:  # a resource's class (ssd), or an sku the catalog lists no product for
        shown = ", ".join(named + unnamed)
        name = f"{plan.meter.label} ({shown})" if dimensions else plan.meter.label
    start, end = min(scope.start for scope in scopes), max(scope.end for scope in scopes)
    return name if _is_whole_period(start, end) else f"{name}, {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"


def _is_whole_period(start: datetime, end: datetime) -> bool:
    period = Period.containing(start.date())
    return start == period.start and end == period.end
